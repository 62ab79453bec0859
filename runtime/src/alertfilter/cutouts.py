"""An alert's image cutouts as PNG images: FITS read with astropy, scaled with a standard
astronomical stretch (IRAF's zscale interval, then an asinh stretch), drawn in grey.

Needs the ``report`` extra (astropy, numpy, Pillow): ``pip install 'alertfilter[report]'``.
"""

from __future__ import annotations

import gzip
import io
import warnings
from typing import Any

#: Side of a rendered cutout, px (the stamp is scaled up by whole pixels, nearest neighbour, to about this).
CUTOUT_PX = 180


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
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CutoutError(f"gzip data that cannot be decompressed: {exc}") from None
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


def render_png(image: Any, px: int = CUTOUT_PX) -> tuple[bytes, int, int]:
    """``image`` (2-D array) as a grey PNG: zscale interval, asinh stretch, north (the last FITS row) up.

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
        raise CutoutError("every pixel is blank (NaN)")
    filled = np.where(finite, image, np.nanmedian(image[finite]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zscale on a flat stamp warns and falls back to min/max
        norm = ImageNormalize(filled, interval=ZScaleInterval(), stretch=AsinhStretch())
        scaled = np.clip(np.ma.filled(norm(filled), 0.0), 0.0, 1.0)
    grey = (scaled[::-1] * 255).round().astype(np.uint8)
    h, w = grey.shape
    scale = max(1, round(px / max(h, w)))
    img = Image.fromarray(grey, mode="L").resize((w * scale, h * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue(), w * scale, h * scale


def cutout_png(value: Any, px: int = CUTOUT_PX) -> tuple[bytes, int, int]:
    """A cutout field's value (see :func:`cutout_bytes`) drawn as PNG: ``(png, width, height)``.

    Raises:
        CutoutError: no cutout, or nothing that can be drawn (the message says why).
    """
    data = cutout_bytes(value)
    if data is None:
        raise CutoutError("the alert has no such cutout")
    return render_png(fits_image(data), px)
