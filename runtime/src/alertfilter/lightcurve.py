"""An alert's light curve: PSF flux (nJy) against time, per band, with error bars, from the alert's
history and its own detection, drawn with matplotlib as a PNG.

Needs the ``report`` extra (matplotlib): ``pip install 'alertfilter[report]'``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

from .fields import MissingField, get_field, parse_path
from .surveys import Survey

#: Colours of the bands, as Rubin's plots draw them.
BAND_COLOURS = {"u": "#1600ea", "g": "#31de1f", "r": "#b52626", "i": "#370201", "z": "#ba52ff", "y": "#61a2b3"}
#: Size of the drawn figure, inches at :data:`DPI`.
FIGSIZE = (5.6, 3.0)
DPI = 100


@dataclass(frozen=True)
class Point:
    """One measurement: ``time`` (days, the survey's unit), ``flux`` and ``err`` (nJy), its band, and
    ``kind``: ``alert`` (the triggering detection), ``detection`` or ``forced`` (forced photometry)."""

    time: float
    flux: float
    err: float | None
    band: str
    kind: str


def points(alert: dict[str, Any], survey: Survey) -> list[Point]:
    """The measurements the light curve shows, oldest first: the history's detections (and Rubin's
    forced photometry), then the alert's own; entries without time or flux are left out (ZTF's
    upper limits)."""
    out: list[Point] = []

    def add(det: Any, kind: str) -> None:
        if not isinstance(det, dict):
            return
        t, (flux, err) = survey.time(det), survey.flux(det)
        if t is not None and flux is not None:
            err = err if err is not None and err >= 0 else None  # a negative error is no error bar
            out.append(Point(t, flux, err, survey.band(det) or "?", kind))

    for name in survey.history:
        for det in alert.get(name) or ():
            add(det, "detection")
    for det in alert.get("prvDiaForcedSources") or ():
        add(det, "forced")
    with contextlib.suppress(MissingField):
        add(get_field(alert, parse_path(survey.source)), "alert")
    return sorted(out, key=lambda p: p.time)


def band_label(band: str) -> str:
    """``band`` as a legend label: at most 12 characters, ``$`` escaped (matplotlib would parse it as
    math text, and a stray one fails the drawing)."""
    short = band if len(band) <= 12 else band[:11] + "…"
    return short.replace("$", r"\$")


def render_png(pts: list[Point], survey: Survey) -> tuple[bytes, str | None]:
    """The light curve of ``pts`` as a PNG of :data:`FIGSIZE` at :data:`DPI` (an empty plot says
    "no measurements").

    Returns:
        ``(png, problem)``: ``problem`` is None, or why the points could not be drawn (values
        matplotlib cannot draw, such as fluxes near 1e308); the PNG is then an empty plot saying so.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tight_layout on a huge legend, overflows: the PNG says enough
        try:
            return _draw(pts, survey, "no measurements"), None
        except Exception as exc:  # noqa: BLE001 - an alert's odd values must not take the page down
            problem = f"cannot be drawn: {type(exc).__name__}"
            return _draw([], survey, problem), problem


def _draw(pts: list[Point], survey: Survey, empty: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bands = sorted({p.band for p in pts}, key=lambda b: ("ugrizy".find(b) % 7, b))
    for band in bands:
        labelled = False
        colour = BAND_COLOURS.get(band, "#555555")
        for kind, marker, fill in (("forced", "o", "none"), ("detection", "o", colour), ("alert", "*", colour)):
            sel = [p for p in pts if p.band == band and p.kind == kind]
            if not sel:
                continue
            ax.errorbar(
                [p.time for p in sel],
                [p.flux for p in sel],
                yerr=[p.err or 0.0 for p in sel],
                fmt=marker,
                color=colour,
                mfc=fill,
                ms=12 if kind == "alert" else 4,
                elinewidth=0.8,
                capsize=0,
                label=None if labelled else band_label(band),
            )
            labelled = True
    if not pts:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="best", fontsize=8, title="band", title_fontsize=8)
    if pts and max(p.time for p in pts) - min(p.time for p in pts) < 1.0:
        mid = (max(p.time for p in pts) + min(p.time for p in pts)) / 2
        ax.set_xlim(mid - 1.0, mid + 1.0)  # one night or less: a two-day window, not matplotlib's decades
    ax.axhline(0.0, color="#999999", lw=0.5)
    ax.set_xlabel(f"time ({survey.time_unit})")
    ax.set_ylabel("PSF flux (nJy)")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
