"""A filter that uses every science package of the runner image at load and per alert (tests/images)."""

import astropy.units as u
import light_curve as lc
import numpy as np
import scipy.stats
import sklearn
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sklearn.ensemble import IsolationForest

AMPLITUDE = lc.Amplitude()
MODEL = IsolationForest(n_estimators=5, random_state=0).fit(np.arange(20.0).reshape(10, 2))


def every_package(alert):
    src = alert["diaSource"]
    when = Time(src["midPointTai"], format="mjd", scale="tai")
    where = SkyCoord(src["ra"] * u.deg, src["decl"] * u.deg).galactic
    amplitude = AMPLITUDE(np.arange(5.0), np.array([1.0, 2.0, 3.0, 2.0, 1.0]), np.ones(5))
    p = scipy.stats.norm.cdf(0.0)
    score = MODEL.decision_function([[1.0, 2.0]])[0]
    return bool(when.utc.jd > 2400000 and -90 <= where.b.deg <= 90 and amplitude > 0 and p == 0.5) and bool(
        np.isfinite(score) and sklearn.__version__
    )
