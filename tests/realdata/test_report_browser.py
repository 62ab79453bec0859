"""The report of the shared real alerts in a real headless Chromium: it loads offline with no console
error, every cutout decodes, and the screenshot shows the layout the page promises (element counts
and sizes, painted where the layout puts them; not pixel values)."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.realdata.chromium import Browser

LAYOUT_JS = """
(async () => {
  const imgs = [...document.images];
  const decoded = await Promise.all(imgs.map(i => i.decode().then(() => true, () => false)));
  const box = e => { const r = e.getBoundingClientRect();
                     return {x: r.x, y: r.y + window.scrollY, w: r.width, h: r.height}; };
  return {
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    decoded,
    natural: imgs.map(i => [i.naturalWidth, i.naturalHeight]),
    sections: [...document.querySelectorAll('section.alert')].map(s => ({
      id: s.id,
      box: box(s),
      table: box(s.querySelector('table.facts')),
      rows: s.querySelectorAll('table.facts tr').length,
      cutouts: [...s.querySelectorAll('img.cutout-img')].map(box),
      missing: s.querySelectorAll('.cutout-missing').length,
      curve: box(s.querySelector('img.lightcurve-img')),
    })),
  };
})()
"""


@pytest.fixture(scope="module")
def page(alerts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of every shared real alert (20 + 4 Rubin v10.0, 2 ZTF), made by the command line."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    files = [alerts_dir / n for n in ("rubin-v10_0-history-4.avro", "ZTF19acihgng.avro", "ZTF19acxxwrs.avro")]
    files.append(alerts_dir / "rubin-v10_0-real-20.avro")
    cmd = [sys.executable, "-m", "alertfilter", "report", *map(str, files), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    try:
        b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    except Exception as exc:  # noqa: BLE001 - say why, then fail (never skip)
        pytest.fail(f"headless chromium did not start: {exc}")
    b.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
    yield b
    b.close()


@pytest.fixture(scope="module")
def layout(browser: Browser, page: Path) -> dict[str, Any]:
    browser.open(page)
    result: dict[str, Any] = browser.evaluate(LAYOUT_JS)
    return result


def test_the_page_loads_offline_without_console_errors(browser, layout, page):
    assert browser.console_errors() == []
    assert {u.split(":", 1)[0] for u in browser.requested_urls()} <= {"file", "data"}  # nothing from a network


def test_every_image_decodes(layout):
    assert len(layout["decoded"]) == 26 * 4  # three cutouts and a light curve per alert
    assert all(layout["decoded"])
    assert all(w > 0 and h > 0 for w, h in layout["natural"])


def test_the_layout_has_each_alert_with_its_cutouts_side_by_side_and_its_light_curve(layout):
    sections = layout["sections"]
    assert len(sections) == 26
    assert len({s["id"] for s in sections}) == 26
    for s in sections:
        assert s["rows"] == 9 and s["missing"] == 0
        cuts = s["cutouts"]
        assert len(cuts) == 3
        assert all(c["w"] >= 150 and abs(c["w"] - c["h"]) <= 2 for c in cuts)  # square stamps, drawn large
        assert len({round(c["y"]) for c in cuts}) == 1  # one row...
        assert (
            cuts[0]["x"] + cuts[0]["w"] <= cuts[1]["x"] and cuts[1]["x"] + cuts[1]["w"] <= cuts[2]["x"]
        )  # ...in order
        assert (s["curve"]["w"], s["curve"]["h"]) == (560 + 2, 300 + 2)  # the figure and its 1 px border
        for part in [s["table"], *cuts, s["curve"]]:  # inside its section, inside the page's width
            assert s["box"]["x"] <= part["x"] and part["x"] + part["w"] <= s["box"]["x"] + s["box"]["w"] + 1
            assert s["box"]["y"] <= part["y"] and part["y"] + part["h"] <= s["box"]["y"] + s["box"]["h"] + 1
    for a, b in itertools.pairwise(sections):  # one after the other, never overlapping
        assert a["box"]["y"] + a["box"]["h"] <= b["box"]["y"]
    assert layout["width"] <= 1280  # no horizontal scrolling at 1280 px


def test_the_screenshot_shows_the_images_where_the_layout_puts_them(browser, layout):
    first = layout["sections"][:2]
    height = round(first[-1]["box"]["y"] + first[-1]["box"]["h"]) + 16
    png = browser.screenshot(1280, height)
    shot = Image.open(io.BytesIO(png)).convert("L")
    assert shot.size == (1280, height)
    px = np.asarray(shot, dtype=float)
    for s in first:
        for r in [*s["cutouts"], s["curve"]]:
            x, y, w, h = (round(r[k]) for k in ("x", "y", "w", "h"))
            inner = px[y + 2 : y + h - 2, x + 2 : x + w - 2]
            assert inner.std() > 5, f"nothing painted at {r} in {s['id']}"
        gap = s["cutouts"][0]
        right = px[round(gap["y"]) + 5 : round(gap["y"] + gap["h"]) - 5, 1260:1275]  # the page's margin
        assert right.std() < 1 and right.mean() > 240  # the background, untouched
    target = os.environ.get("ALERTFILTER_REPORT_SCREENSHOT")  # the README's picture is made so
    if target:
        Path(target).write_bytes(png)
