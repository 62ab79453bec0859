"""The original LSST mini-broker's example filter (DMTN-028), adapted to Rubin's v10 alert fields.

Accept a difference-image source detected at signal-to-noise above 5 whose point-source flux is
brighter than 20th magnitude (AB): psfFlux > 10**((31.4 - 20) / 2.5) nJy ≈ 36,308 nJy.
"""
import math

from alertfilter import AlertFilter

# AB magnitude m has flux 10**((31.4 - m) / 2.5) nJy.
FLUX_MAG_20_NJY = 10 ** ((31.4 - 20.0) / 2.5)


class BrightSignificant(AlertFilter):
    def filter(self, alert):
        src = alert["diaSource"]
        snr = src.get("snr")
        flux = src.get("psfFlux")
        if snr is None or flux is None or math.isnan(snr) or math.isnan(flux):
            return False
        return snr > 5 and flux > FLUX_MAG_20_NJY
