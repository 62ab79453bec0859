"""``alertfilter report``: a self-contained HTML page of alerts (usually a filter's accepted ones).

Per alert: its ids, visit, time, band, PSF flux with its error and S/N, position; the science,
template and difference cutouts drawn from their FITS (:mod:`.cutouts`); the light curve from its
history (:mod:`.lightcurve`). Every image is a PNG inside the page (``data:`` URIs) and the page has
no script, style sheet or font from elsewhere, so it opens without a network connection.

Needs the ``report`` extra (astropy, matplotlib): ``pip install 'alertfilter[report]'``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cutouts, lightcurve
from .fields import MissingField, get_field, parse_path
from .surveys import Survey, survey_of

_MJD0 = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)
_JD_MJD = 2400000.5
#: At most this many alerts are drawn; the page says how many more there were.
DEFAULT_MAX_ALERTS = 200
#: Longest text of an alert shown in its table, characters.
MAX_TEXT = 200

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 16px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 8px; font-family: monospace; }
.summary { color: #555; margin: 0 0 16px; }
.alert { border: 1px solid #ccc; border-radius: 6px; padding: 12px; margin: 0 0 16px; }
.body { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
table.facts { border-collapse: collapse; min-width: 300px; }
table.facts th { text-align: left; color: #555; font-weight: normal; padding: 1px 10px 1px 0; }
table.facts td { font-family: monospace; padding: 1px 0; }
h2, table.facts td { overflow-wrap: anywhere; }  /* an alert's long unbroken strings wrap, never widen the page */
table.facts th { white-space: nowrap; }
.cutouts { display: flex; gap: 8px; }
figure { margin: 0; text-align: center; } figcaption { color: #555; font-size: 12px; }
img.cutout-img { image-rendering: pixelated; border: 1px solid #888; display: block; }
.cutout-missing { width: 180px; height: 180px; border: 1px dashed #aaa; color: #888; display: flex;
  align-items: center; justify-content: center; font-size: 12px; padding: 8px; box-sizing: border-box; }
img.lightcurve-img { display: block; border: 1px solid #ddd; }
.more { color: #555; font-style: italic; }
"""


@dataclass(frozen=True)
class ReportItem:
    """One alert to show: the decoded ``record``, its writer schema's full name and where it came
    from (``FILE#INDEX`` or ``TOPIC/PARTITION@OFFSET``)."""

    record: Any
    schema_name: str
    where: str


def _value(record: Any, path: str) -> Any:
    try:
        return get_field(record, parse_path(path), allow_null=True)
    except MissingField:
        return None


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _short(text: str) -> str:
    """``text`` cut to :data:`MAX_TEXT` characters (an alert's strings can be of any length)."""
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}… ({len(text):,} characters)"


def _when(t: float | None, survey: Survey) -> str:
    """The time ``t`` (the survey's unit) and its calendar date: TAI for Rubin's ``midpointMjdTai``
    (and the simulator's ``midPointTai``), UTC for ZTF's ``jd``."""
    if t is None:
        return "—"
    mjd = t - _JD_MJD if survey.time_unit == "JD" else t
    try:
        stamp = (_MJD0 + dt.timedelta(days=mjd)).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError):  # years outside 1-9999: no calendar date
        return f"{survey.time_unit} {t:.5g}"
    return f"{survey.time_unit} {t:.5f} ({stamp} {'UTC' if survey.is_ztf else 'TAI'})"


def _object(rec: Any, det: Any, survey: Survey) -> str:
    """The alert's object: ZTF's ``objectId``; Rubin's ``diaObjectId``, or for a solar-system source
    (``diaObjectId`` 0 or null) its ``ssObjectId`` and designation."""
    if survey.is_ztf:
        return str(_value(rec, "objectId"))
    obj = _value(rec, f"{survey.source}.diaObjectId")
    ss = det.get("ssObjectId") if isinstance(det, dict) else None
    if not obj and ss:
        name = _value(rec, "ssSource.designation")
        return f"solar system {ss}" + (f" ({name})" if name else "")
    return str(obj)


def facts(item: ReportItem, survey: Survey) -> list[tuple[str, str]]:
    """The rows of an alert's table: ``(label, text)``."""
    rec = item.record
    det = _value(rec, survey.source) or {}
    flux, err = survey.flux(det) if isinstance(det, dict) else (None, None)
    ra, dec = (det.get("ra"), det.get("dec", det.get("decl"))) if isinstance(det, dict) else (None, None)
    return [
        ("alert id", str(_value(rec, survey.id_field))),
        ("object id", _object(rec, det, survey)),
        ("visit", str(_value(rec, survey.visit_field))),
        ("time", _when(survey.time(det), survey) if isinstance(det, dict) else "—"),
        ("band", (survey.band(det) if isinstance(det, dict) else None) or "—"),
        ("PSF flux", f"{_fmt(flux)} ± {_fmt(err)} nJy"),
        ("S/N", _fmt(survey.snr(det) if isinstance(det, dict) else None)),
        ("RA, Dec", f"{_fmt(ra, 6)}°, {_fmt(dec, 6)}°" if isinstance(ra, float) and isinstance(dec, float) else "—"),
        ("from", item.where),
    ]


def _img(png: bytes, cls: str, alt: str, width: int, height: int) -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" width="{width}" height="{height}" src="{src}">'


def alert_section(item: ReportItem, survey: Survey) -> str:
    """The HTML of one alert: its table, three cutouts (or why one is missing) and its light curve."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_short(v))}</td></tr>" for k, v in facts(item, survey)
    )
    figs = []
    for label, path in survey.cutouts:
        try:
            png, w, h = cutouts.cutout_png(_value(item.record, path))
            inner = _img(png, "cutout-img", f"{label} cutout", w, h)
        except cutouts.CutoutError as exc:
            inner = f'<div class="cutout-missing">no image: {html.escape(str(exc))}</div>'
        figs.append(f'<figure class="cutout" data-kind="{label}">{inner}<figcaption>{label}</figcaption></figure>')
    pts = lightcurve.points(item.record, survey) if isinstance(item.record, dict) else []
    curve, problem = lightcurve.render_png(pts, survey)
    w, h = (round(v * lightcurve.DPI) for v in lightcurve.FIGSIZE)
    n_bands = len({p.band for p in pts})
    caption = f"light curve: {len(pts)} measurement{'s' if len(pts) != 1 else ''} in {n_bands} band{'s' if n_bands != 1 else ''}"
    if problem:
        caption += f" ({problem})"
    alert_id = html.escape(_short(str(_value(item.record, survey.id_field))))
    return (
        f'<section class="alert" id="alert-{alert_id}"><h2>{alert_id}</h2><div class="body">'
        f'<table class="facts">{rows}</table><div class="cutouts">{"".join(figs)}</div>'
        f'<figure class="lightcurve">{_img(curve, "lightcurve-img", "light curve", w, h)}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure></div></section>"
    )


def render(items: Iterable[ReportItem], title: str, note: str = "", max_alerts: int = DEFAULT_MAX_ALERTS) -> str:
    """The report page of ``items`` (at most ``max_alerts`` drawn), titled ``title``, ``note`` under it.

    Alerts whose schema names no known survey (:func:`~alertfilter.surveys.survey_of`) are drawn as
    Rubin's.
    """
    sections: list[str] = []
    surveys: Counter[str] = Counter()
    total = 0
    for item in items:
        total += 1
        if len(sections) >= max_alerts:
            continue
        survey = survey_of(item.schema_name) or survey_of("lsst.v10_0.alert")
        assert survey is not None
        surveys[survey.name] += 1
        try:
            sections.append(alert_section(item, survey))
        except Exception as exc:  # noqa: BLE001 - one alert's odd values must not take the other alerts' page down
            sections.append(
                f'<section class="alert broken"><h2>{html.escape(item.where)}</h2><p>this alert cannot be drawn: '
                f"{html.escape(_short(f'{type(exc).__name__}: {exc}'))}</p></section>"
            )
    what = ", ".join(f"{n} {name}" for name, n in surveys.most_common()) or "none"
    summary = f"{total} alert{'s' if total != 1 else ''} ({what})"
    if total > len(sections):
        sections.append(f'<p class="more">… and {total - len(sections)} more alerts, not drawn (--max-alerts).</p>')
    if not total:
        sections.append('<p class="more">No alert to show.</p>')
    note_html = f" · {html.escape(note)}" if note else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{html.escape(title)}</h1><p class="summary" data-alerts="{total}">'
        f"{html.escape(summary)}{note_html}</p></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def write(
    path: str | Path, items: Iterable[ReportItem], title: str, note: str = "", max_alerts: int = DEFAULT_MAX_ALERTS
) -> None:
    """Write :func:`render`'s page to ``path`` (UTF-8).

    Raises:
        OSError: the file cannot be written.
    """
    Path(path).write_text(render(items, title, note, max_alerts), encoding="utf-8")
