"""A report of hostile alerts in a real headless Chromium: markup and scripts in the alerts' strings
and file names are shown as text, nothing runs (no dialog, no console error, nothing requested), and
long unbroken strings wrap inside the page rather than widen it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realdata.chromium import Browser
from tests.unit.test_report_attacks import INJECTIONS, alert, source, write

SHOWN_JS = """
(() => ({
  width: document.documentElement.scrollWidth,
  titles: [...document.querySelectorAll('section.alert h2')].map(h => h.textContent),
  cells: [...document.querySelectorAll('table.facts td')].map(td => td.textContent),
  scripts: document.scripts.length,
  handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
}))()
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    d = tmp / "<img src=x onerror=alert('dir')>"
    d.mkdir()
    records = [
        alert(text, diaSource=source(visit=text, band=text, diaObjectId=text), prvDiaSources=[source(band=text)])
        for text in INJECTIONS
    ]
    records.append(alert("x" * 5000, diaSource=source(visit="y" * 5000)))  # one unbroken word each
    alerts = write(d / "<script>alert('file')<script>.avro", records)  # a file name holds no '/'
    out = tmp / "report.html"
    cmd = [sys.executable, "-m", "alertfilter", "report", str(alerts), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def shown(page: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Browser, dict[str, Any]]]:
    try:
        b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    except Exception as exc:  # noqa: BLE001 - say why, then fail (never skip)
        pytest.fail(f"headless chromium did not start: {exc}")
    b.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
    b.open(page)
    result: dict[str, Any] = b.evaluate(SHOWN_JS)
    yield b, result
    b.close()


def test_nothing_of_the_alerts_runs(shown):
    browser, result = shown
    assert result["scripts"] == 0 and result["handlers"] == 0
    assert not [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]
    assert browser.console_errors() == []
    assert {u.split(":", 1)[0] for u in browser.requested_urls()} <= {"file", "data"}


def test_the_alerts_strings_are_shown_as_they_are(shown):
    _, result = shown
    assert result["titles"][: len(INJECTIONS)] == INJECTIONS
    for text in INJECTIONS:
        assert result["cells"].count(text) >= 3  # alert id, object id, visit (the band too)
    assert any("<script>alert('file')<script>.avro#0" in c for c in result["cells"])


def test_long_unbroken_strings_wrap_inside_the_page(shown):
    _, result = shown
    assert result["width"] <= 1280
