"""A per-band filter (function style): reliable, positive i-band detections.

Rubin's ``diaSource.reliability`` is the real/bogus score (1 = surely real); ``band`` is one of
u, g, r, i, z, y; ``psfFlux`` is in nJy and negative for sources that faded.
"""


def reliable_i_band(alert):
    src = alert["diaSource"]
    reliability = src.get("reliability")
    flux = src.get("psfFlux")
    return (src.get("band") == "i" and reliability is not None and reliability > 0.8
            and flux is not None and flux > 0)
