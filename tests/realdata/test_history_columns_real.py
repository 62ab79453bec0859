"""Histories read three ways give the same values on every shared real alert file: decoded whole,
projected to the scalar fields of each record (C), and as numpy columns read from the bytes
(``alert.history``). The data is required: without it the test fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.both_ways import history_both_ways

from .test_fields_both_ways_real import real_files


@pytest.mark.parametrize("path", real_files(), ids=[p.name for p in real_files()])
def test_history_fields_are_identical_whichever_way_a_real_alert_is_decoded(alerts_dir: Path, path: Path) -> None:
    assert history_both_ways(path) > 0
