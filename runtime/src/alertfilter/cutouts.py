"""An alert's image cutouts as PNG images: FITS read with astropy, scaled with a standard
astronomical stretch (IRAF's zscale interval, then an asinh stretch), drawn in grey.

Needs the ``report`` extra (astropy, numpy, Pillow): ``pip install 'alertfilter[report]'``.
"""

from __future__ import annotations

import io
import warnings
import zlib
from typing import Any

#: Side of a rendered cutout, px: a small stamp is scaled up by whole pixels (nearest neighbour) to
#: about this, a larger one scaled down (area average) to fit in it.
CUTOUT_PX = 180
#: The most a gzip-compressed cutout may expand to, bytes: a real stamp is tens of KB (ZTF's 63x63,
#: Rubin's ~34 KB), and a gzip bomb in an alert must not take the report's memory.
MAX_FITS_BYTES = 16 * 1024 * 1024


class CutoutError(ValueError):
    """A cutout holds no image that can be drawn (not FITS, no 2-D image HDU, all pixels blank)."""


def cutout_bytes(value: Any) -> bytes | None:
    """The FITS bytes of a cutout field's value: bytes (Rubin), or a record's ``stampData`` (ZTF,
    the simulated ``lsst.alert``); None when the alert has none."""
    if isinstance(value, dict):
        value = value.get("stampData")
    return bytes(value) if isinstance(value, bytes | bytearray) and value else None


def fits_image(data: bytes) -> Any:
    """The first 2-D image of FITS ``data`` (gzip-compressed or not) as a float numpy array, rows
    bottom to top as FITS stores them.

    Raises:
        CutoutError: not FITS, or no 2-D image in it.
    """
    import numpy as np
    from astropy.io import fits  # type: ignore[import-untyped]

    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
    if not data.startswith(b"SIMPLE"):
        raise CutoutError(f"not a FITS image (it starts with {data[:8]!r})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ZTF's stamps carry cards astropy calls non-standard
        try:
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                for hdu in hdul:
                    if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                        return np.asarray(hdu.data, dtype=np.float64)
        except (OSError, ValueError, TypeError) as exc:
            raise CutoutError(f"FITS that cannot be read: {exc}") from None
    raise CutoutError("FITS without a 2-D image")


def _gunzip(data: bytes) -> bytes:
    """``data`` decompressed (one gzip member), at most :data:`MAX_FITS_BYTES`.

    Raises:
        CutoutError: not gzip data, or it expands past the bound.
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_FITS_BYTES)
    except zlib.error as exc:
        raise CutoutError(f"gzip data that cannot be decompressed: {exc}") from None
    if d.unconsumed_tail:
        raise CutoutError(f"gzip data that expands to more than {MAX_FITS_BYTES:,} bytes: not a cutout")
    return out


def render_png(image: Any, px: int = CUTOUT_PX) -> tuple[bytes, int, int]:
    """``image`` (2-D array) as a grey PNG: zscale interval, asinh stretch, north (the last FITS row) up;
    a stamp smaller than ``px`` scaled up by whole pixels, a larger one scaled down to fit ``px`` x ``px``.

    Returns:
        ``(png, width, height)``, sizes in px.

    Raises:
        CutoutError: no finite pixel.
    """
    import numpy as np
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval  # type: ignore[import-untyped]
    from PIL import Image

    finite = np.isfinite(image)
    if not finite.any():
        raise CutoutError("no pixel has a finite value (all NaN or infinite)")
    filled = np.where(finite, image, np.nanmedian(image[finite]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zscale on a flat stamp warns and falls back to min/max
        norm = ImageNormalize(filled, interval=ZScaleInterval(), stretch=AsinhStretch())
        scaled = np.clip(np.ma.filled(norm(filled), 0.0), 0.0, 1.0)
    grey = (scaled[::-1] * 255).round().astype(np.uint8)
    h, w = grey.shape
    if max(h, w) <= px:
        scale = max(1, round(px / max(h, w)))
        size, how = (w * scale, h * scale), Image.Resampling.NEAREST
    else:
        size, how = (max(1, round(w * px / max(h, w))), max(1, round(h * px / max(h, w)))), Image.Resampling.BOX
    img = Image.fromarray(grey, mode="L").resize(size, how)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue(), size[0], size[1]


def cutout_png(value: Any, px: int = CUTOUT_PX) -> tuple[bytes, int, int]:
    """A cutout field's value (see :func:`cutout_bytes`) drawn as PNG: ``(png, width, height)``.

    Raises:
        CutoutError: no cutout, or nothing that can be drawn (the message says why).
    """
    data = cutout_bytes(value)
    if data is None:
        raise CutoutError("the alert has no such cutout")
    return render_png(fits_image(data), px)
