"""A filter using the runner image's science packages (README "What a filter can import"): sources
off the Galactic plane (astropy) whose light curve varies by more than 1000 nJy (light-curve's
amplitude feature on the history's columns, numpy)."""

import astropy.units as u
import light_curve as lc
import numpy as np
from astropy.coordinates import SkyCoord

AMPLITUDE = lc.Amplitude()
PLANE = 10 * u.deg


def varying_off_the_plane(alert):
    src = alert["diaSource"]
    if abs(SkyCoord(src["ra"] * u.deg, src["dec"] * u.deg).galactic.b) < PLANE:
        return False
    columns = alert.history("prvDiaSources", "midpointMjdTai", "psfFlux", "psfFluxErr")
    t, flux, err = (np.asarray(c, dtype=np.float64) for c in columns)
    keep = np.isfinite(t) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
    if keep.sum() < 3:
        return False
    order = np.argsort(t[keep])
    return bool(AMPLITUDE(t[keep][order], flux[keep][order], err[keep][order]) > 1000)  # nJy
