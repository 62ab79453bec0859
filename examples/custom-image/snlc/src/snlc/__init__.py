"""A group's own code: a toy "is it rising?" test on a light curve, shipped in the group's image."""

from __future__ import annotations

import numpy as np


def rising(flux: list[float], min_points: int = 1) -> bool:
    """True when the fluxes (oldest first, nJy) have at least ``min_points`` finite values and the
    last one is the largest."""
    values = np.asarray([f for f in flux if f is not None], dtype=float)
    values = values[np.isfinite(values)]
    return values.size >= min_points and bool(values[-1] >= values.max())
