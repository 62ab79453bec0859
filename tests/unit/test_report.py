"""``alertfilter report`` and ``check --html``: a self-contained page, per alert its facts, three
cutouts drawn from FITS and a light curve from its history; and which survey a schema names."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import fastavro
import numpy as np
import pytest
from astropy.io import fits  # type: ignore[import-untyped]
from PIL import Image

from alertfilter.codecs import read_container
from alertfilter.simulate import simulate, write_container
from alertfilter.surveys import survey_of

from .cli_run import run


def fits_stamp(side: int = 30, peak: float = 500.0) -> bytes:
    """A FITS image with a Gaussian source in noise, as a survey's cutout."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:side, :side]
    img = rng.normal(0, 10, (side, side)) + peak * np.exp(-((x - side / 2) ** 2 + (y - side / 2) ** 2) / 8)
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(img.astype(np.float32))]).writeto(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 simulated alerts (lsst.alert) with 3 earlier detections each; alerts 1-3 get FITS cutouts."""
    tmp = tmp_path_factory.mktemp("rep")
    raw = tmp / "raw.avro"
    write_container(raw, simulate([100, 101], 3, history=3, cutout_bytes=64))
    schema, records = read_container(str(raw))
    for rec in records[:3]:
        for k in ("cutoutTemplate", "cutoutDifference"):  # the 2018 schema has no science cutout
            rec[k]["stampData"] = fits_stamp()
    path = tmp / "alerts.avro"
    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), records)
    return path


def images(page: str, cls: str) -> list[tuple[Image.Image, int, int]]:
    """The decoded images of class ``cls`` with the width and height the page gives them."""
    found = re.findall(
        rf'<img class="{cls}"[^>]*width="(\d+)" height="(\d+)" src="data:image/png;base64,([^"]+)"', page
    )
    out: list[tuple[Image.Image, int, int]] = []
    for w, h, data in found:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
        out.append((img, int(w), int(h)))
    return out


def test_report_draws_each_alert_with_its_cutouts_and_light_curve(tmp_path, alerts, capsys):
    out = tmp_path / "r.html"
    code, stdout, err = run(capsys, "report", alerts, "--out", out)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}"
    page = out.read_text()
    assert page.count('<section class="alert"') == 6
    assert 'data-alerts="6"' in page and "6 alerts (6 simulated lsst.alert)" in page
    cuts = images(page, "cutout-img")
    assert len(cuts) == 6  # alerts 1-3: FITS; 4-6: the simulator's random bytes are not FITS
    for img, w, h in cuts:
        assert img.format == "PNG" and img.size == (w, h) and w >= 150
        px = np.asarray(img)
        assert px.max() > px.min()  # a stretched image, not a flat one
    assert page.count('class="cutout-missing"') == 6 and "no image: not a FITS image" in page
    curves = images(page, "lightcurve-img")
    assert len(curves) == 6 and all(img.size == (w, h) for img, w, h in curves)
    assert page.count("light curve: 4 measurements") == 6  # 3 earlier detections and the alert's own
    # the alert's facts, from the lsst.alert fields
    assert "<th>alert id</th><td>1</td>" in page and "<th>visit</th><td>100" in page
    assert re.search(r"<th>PSF flux</th><td>[-\d,.]+ ± [\d,.]+ nJy</td>", page)


def test_the_page_needs_nothing_from_a_network(tmp_path, alerts, capsys):
    out = tmp_path / "r.html"
    run(capsys, "report", alerts, "--out", out)
    page = out.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "default-src 'none'" in page  # and the page forbids itself any other load


def test_check_html_reports_exactly_the_accepted_alerts(tmp_path, alerts, capsys):
    f = tmp_path / "f.py"
    f.write_text("def f(alert):\n    return alert['alertId'] % 2 == 1\n")
    out = tmp_path / "acc.html"
    code, stdout, err = run(capsys, "check", f, "--alerts", alerts, "--html", out)
    assert code == 0, err
    assert stdout.startswith("6 alerts: 3 accepted") and f"report: {out}" in err
    page = out.read_text()
    ids = re.findall(r'<section class="alert" id="alert-(\d+)"', page)
    assert ids == ["1", "3", "5"]
    assert "filter " in page and "3 accepted of 6" in page


def test_max_alerts_limits_what_is_drawn_and_says_how_many_more(tmp_path, alerts, capsys):
    out = tmp_path / "r.html"
    code, _, _ = run(capsys, "report", alerts, "--out", out, "--max-alerts", "2")
    page = out.read_text()
    assert code == 0 and page.count('<section class="alert"') == 2 and "and 4 more alerts, not drawn" in page


def test_report_on_a_file_that_is_not_alerts_writes_nothing(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.write_text("hello")
    out = tmp_path / "r.html"
    code, _, err = run(capsys, "report", junk, "--out", out)
    assert code == 1 and "is not an Avro container file" in err and not out.exists()


@pytest.mark.parametrize(
    ("name", "survey", "id_field", "visit_field"),
    [
        ("lsst.v10_0.alert", "Rubin v10.0", "diaSourceId", "diaSource.visit"),
        ("lsst.v11_1.alert", "Rubin v11.1", "diaSourceId", "diaSource.visit"),
        ("ztf.alert", "ZTF", "candid", "candidate.pid"),
        ("lsst.alert", "simulated lsst.alert", "alertId", "diaSource.ccdVisitId"),
    ],
)
def test_the_schema_name_tells_the_survey_and_its_fields(name, survey, id_field, visit_field):
    s = survey_of(name)
    assert s is not None and (s.name, s.id_field, s.visit_field) == (survey, id_field, visit_field)


def test_an_unknown_schema_names_no_survey():
    assert survey_of("acme.alert") is None and survey_of("lsst.v10_0.diaSource") is None


def test_ztf_flux_is_nJy_from_the_magnitude_signed_by_isdiffpos():
    ztf = survey_of("ztf.alert")
    assert ztf is not None
    flux, err = ztf.flux({"magpsf": 31.4 - 2.5 * 3, "sigmapsf": 0.1, "isdiffpos": "t"})
    assert flux == pytest.approx(1000.0) and err == pytest.approx(1000 * 0.1 * np.log(10) / 2.5)
    assert ztf.flux({"magpsf": 31.4 - 2.5 * 3, "sigmapsf": 0.1, "isdiffpos": "f"})[0] == pytest.approx(-1000.0)
    assert ztf.flux({"magpsf": None, "diffmaglim": 20.5}) == (None, None)  # an upper limit is no point
    assert ztf.band({"fid": 2}) == "r" and ztf.snr({"magpsf": 20.0, "sigmapsf": 0.1}) == pytest.approx(10.857, 1e-3)
