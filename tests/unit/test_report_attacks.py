"""``alertfilter report`` on hostile alerts: every string an alert or a file name carries is shown
as text (no markup, no script, no event handler reaches the page), and odd values (NaN and
infinite fluxes, negative errors, times past year 9999, ``$`` in a band, 100,000-character ids,
empty histories) or broken cutouts (truncated, garbage, a header promising 80 GB, a gzip bomb, a
3000 x 3000 or 5000 x 1 image, a cube, no finite pixel) cost at most that alert's image, never the
page."""

from __future__ import annotations

import gzip
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from astropy.io import fits  # type: ignore[import-untyped]

from alertfilter import cutouts

from .cli_run import run

SOURCE: dict[str, Any] = {
    "type": "record",
    "name": "diaSource",
    "fields": [
        {"name": n, "type": ["null", t]}
        for n, t in [
            ("visit", "string"),
            ("midpointMjdTai", "double"),
            ("band", "string"),
            ("psfFlux", "double"),
            ("psfFluxErr", "double"),
            ("snr", "double"),
            ("ra", "double"),
            ("dec", "double"),
            ("diaObjectId", "string"),
        ]
    ],
}
#: Rubin's schema name with strings where Rubin has numbers: every field a hostile producer controls.
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "alert",
    "namespace": "lsst.v10_0",
    "fields": [
        {"name": "diaSourceId", "type": "string"},
        {"name": "diaSource", "type": SOURCE},
        {"name": "prvDiaSources", "type": ["null", {"type": "array", "items": "lsst.v10_0.diaSource"}]},
        *({"name": n, "type": ["null", "bytes"]} for n in ("cutoutScience", "cutoutTemplate", "cutoutDifference")),
    ],
}
INJECTIONS = [
    "<script>alert(1)</script>",
    "</script><script>alert(2)</script>",
    "\"'><img src=x onerror=alert(3)>",
    "</style><svg onload=alert(4)>",
    "<!--",
    "javascript:alert(5)",
]
#: What the page itself is made of; anything else came from an alert.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "main", "section"}
PAGE_TAGS |= {"div", "table", "tr", "th", "td", "figure", "figcaption", "img"}


def source(**kw: Any) -> dict[str, Any]:
    d = {"visit": "1", "midpointMjdTai": 60000.0, "band": "g", "psfFlux": 100.0, "psfFluxErr": 10.0, "snr": 10.0}
    return d | {"ra": 1.0, "dec": 2.0, "diaObjectId": "7"} | kw


def alert(alert_id: str, **kw: Any) -> dict[str, Any]:
    a = {"diaSourceId": alert_id, "diaSource": source(), "prvDiaSources": None}
    return a | {"cutoutScience": None, "cutoutTemplate": None, "cutoutDifference": None} | kw


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(SCHEMA), records)
    return path


def fits_image(array: Any) -> bytes:
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(array)]).writeto(out)
    return out.getvalue()


class Tags(HTMLParser):
    """Every start tag and attribute of a page, as a browser's tokenizer reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def report(capsys: pytest.CaptureFixture[str], tmp_path: Path, inputs: Path) -> str:
    out = tmp_path / "r.html"
    code, _, err = run(capsys, "report", inputs, "--out", out)
    assert code == 0, err
    assert "Traceback" not in err
    return out.read_text()


def test_markup_in_ids_strings_and_file_names_is_shown_as_text(tmp_path, capsys):
    d = tmp_path / "<script>alert('file')<"
    d.mkdir()
    records = [
        alert(text, diaSource=source(visit=text, band=text, diaObjectId=text), prvDiaSources=[source(band=text)])
        for text in INJECTIONS
    ]
    page = report(capsys, tmp_path, write(d / "<img src=x onerror=alert(6)>.avro", records))
    p = Tags()
    p.feed(page)
    assert {t for t, _ in p.tags} <= PAGE_TAGS
    assert all(not k.startswith("on") for _, attrs in p.tags for k in attrs)
    assert all((a.get("src") or "data:image/png;base64,").startswith("data:image/png;base64,") for _, a in p.tags)
    assert "<script" not in page.lower() and "<svg" not in page.lower() and "<!--" not in page
    shown = "".join(p.text)
    for text in INJECTIONS:  # each shown as itself: as the alert id, the visit, the band and the object
        assert shown.count(text) >= 4, text
    assert "<img src=x onerror=alert(6)>.avro#0" in shown and "alert('file')" in shown
    assert page.count('<section class="alert"') == len(INJECTIONS)
    assert "default-src 'none'" in page  # and a browser would refuse any script anyway


def test_check_html_escapes_the_filter_file_name(tmp_path, capsys):
    alerts = write(tmp_path / "a.avro", [alert("1")])
    f = tmp_path / '"><script src=data:,x()>.py'  # a file name has no '/': no closing tag
    f.write_text("def f(alert):\n    return True\n")
    out = tmp_path / "acc.html"
    code, _, err = run(capsys, "check", f, "--alerts", alerts, "--html", out, "--visit-field", "diaSource.visit")
    assert code == 0, err
    page = out.read_text()
    assert "<script" not in page and "&quot;&gt;&lt;script src=data:,x()&gt;.py" in page


@pytest.mark.parametrize(
    ("record", "expect"),
    [
        (alert("neg-err", diaSource=source(psfFluxErr=-5.0)), "light curve: 1 measurement in 1 band<"),
        (alert("dollar", diaSource=source(band="$\\frac{"), prvDiaSources=[source(band="$x^$")]), "in 2 bands<"),
        (alert("huge", diaSource=source(psfFlux=1e308, psfFluxErr=1e308), prvDiaSources=[source(psfFlux=-1e308)]), ""),
        (alert("far-future", diaSource=source(midpointMjdTai=1e300)), "<td>MJD 1e+300</td>"),
        (alert("far-past", diaSource=source(midpointMjdTai=-1e18)), "<td>MJD -1e+18</td>"),
        (
            alert("nan", diaSource=source(psfFlux=float("nan"), psfFluxErr=float("inf"), snr=float("nan"))),
            "<th>PSF flux</th><td>— ± — nJy</td>",
        ),
        (alert("inf-time", diaSource=source(midpointMjdTai=float("inf"))), "<th>time</th><td>—</td>"),
        (alert("no-history", prvDiaSources=[]), "light curve: 1 measurement in 1 band<"),
        (alert("long-band", diaSource=source(band="g" * 100_000)), "(100,000 characters)"),
        (alert("x" * 100_000), "(100,000 characters)</h2>"),
    ],
    ids=lambda v: v["diaSourceId"][:12] if isinstance(v, dict) else "",
)
def test_odd_values_cost_at_most_the_alerts_light_curve(tmp_path, capsys, record, expect):
    page = report(capsys, tmp_path, write(tmp_path / "a.avro", [record]))
    assert page.count('<section class="alert"') == 1 and "cannot be drawn: " not in page.split("<figcaption>")[0]
    assert len(re.findall(r'<img class="lightcurve-img"', page)) == 1
    assert expect in page
    assert len(page) < 100_000  # long strings are cut, not copied


def test_a_light_curve_matplotlib_cannot_draw_says_so(tmp_path, capsys):
    record = alert("huge", diaSource=source(psfFlux=1e308, psfFluxErr=1e308), prvDiaSources=[source(psfFlux=-1e308)])
    page = report(capsys, tmp_path, write(tmp_path / "a.avro", [record]))
    assert re.search(r"light curve: 2 measurements in 1 band \(cannot be drawn: \w+\)", page)


BIG_HEADER = fits.Header([("SIMPLE", True), ("BITPIX", -64), ("NAXIS", 2), ("NAXIS1", 100_000), ("NAXIS2", 100_000)])


@pytest.mark.parametrize(
    ("name", "data", "expect"),
    [
        ("truncated", lambda: fits_image(np.ones((30, 30), "f4"))[:3000], "FITS that cannot be read"),
        ("garbage", lambda: b"SIMPLE  = garbage" + b"x" * 5000, "FITS that cannot be read"),
        ("80 GB header", lambda: BIG_HEADER.tostring().encode() + b"\0" * 2880, "FITS that cannot be read"),
        (
            "gzip bomb",
            lambda: gzip.compress(b"SIMPLE  =" + bytes(64 * 1024**2)),
            "gzip data that expands to more than 16,777,216",
        ),
        ("bad gzip", lambda: b"\x1f\x8b" + b"\xff" * 100, "gzip data that cannot be decompressed"),
        ("cube", lambda: fits_image(np.ones((3, 4, 5), "f4")), "FITS without a 2-D image"),
        ("all infinite", lambda: fits_image(np.full((5, 5), np.inf, "f4")), "no pixel has a finite value"),
        (
            "not FITS",
            lambda: b"<script>alert(1)</script>",
            "not a FITS image (it starts with b&#x27;&lt;script&gt;&#x27;)",
        ),
    ],
)
def test_a_broken_cutout_is_said_in_place_of_its_image(tmp_path, capsys, name, data, expect):
    page = report(capsys, tmp_path, write(tmp_path / "a.avro", [alert("1", cutoutScience=data())]))
    assert page.count('<div class="cutout-missing">') == 3  # the science one, and the two the alert lacks
    assert f"no image: {expect}" in page, re.findall(r"no image: [^<]*", page)


@pytest.mark.parametrize(
    ("shape", "size"), [((3000, 3000), (180, 180)), ((1, 5000), (180, 1)), ((1, 1), (180, 180)), ((63, 63), (189, 189))]
)
def test_a_cutout_of_any_size_fits_the_page(shape, size):
    rng = np.random.default_rng(1)
    png, w, h = cutouts.cutout_png(fits_image(rng.normal(size=shape).astype("f4")))
    assert (w, h) == size and png.startswith(b"\x89PNG")
