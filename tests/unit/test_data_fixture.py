"""The small simulated alerts in ``tests/data`` are what ``make_alerts.py`` makes, and what the
README there promises: a fresh clone's unit tests depend on both."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import fastavro

DATA = Path(__file__).resolve().parents[1] / "data"


def _make_alerts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_alerts", DATA / "make_alerts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_exactly_what_the_script_generates() -> None:
    for name, data in _make_alerts().expected_files().items():
        assert (DATA / name).read_bytes() == data, f"{name} drifted: run tests/data/make_alerts.py"


def test_the_twelve_alerts_are_three_interleaved_visits_as_documented() -> None:
    with (DATA / "sim-lsst-alert-12.avro").open("rb") as fh:
        reader = fastavro.reader(fh)
        assert isinstance(reader.writer_schema, dict)
        assert reader.writer_schema["name"] == "lsst.alert"
        alerts = cast("list[dict[str, Any]]", list(reader))
    assert [a["alertId"] for a in alerts] == list(range(1, 13))
    visits = [a["diaSource"]["ccdVisitId"] for a in alerts]
    assert visits == [101007, 101007, 102007, 101007, 102007, 103007, 101007, 102007, 103007, 103007, 102007, 103007]
    assert Counter(visits) == {101007: 4, 102007: 4, 103007: 4}
    assert [len(a["prv_diaSources"] or []) for a in alerts] == [0, 0, 0, 1, 2, 5, 3, 0, 0, 0, 0, 1]
    assert all(len(a["cutoutDifference"]["stampData"]) == 64 for a in alerts)


def test_the_single_alert_file_is_the_first_alert_alone() -> None:
    with (DATA / "sim-lsst-alert-1.avro").open("rb") as fh:
        (only,) = list(fastavro.reader(fh))
    with (DATA / "sim-lsst-alert-12.avro").open("rb") as fh:
        first = next(iter(fastavro.reader(fh)))
    assert only == first
