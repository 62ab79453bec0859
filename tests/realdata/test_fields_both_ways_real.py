"""Field inference is conservative on the real alerts: every example and test filter gives the
same verdicts with the runner's decoding (projected when its reads are known) as with every field
decoded, on every shared alert file. The data is required: without it the test fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import data_dir
from tests.unit.both_ways import filter_sources, verdicts

SOURCES = filter_sources()


def real_files() -> list[Path]:
    return sorted((data_dir() / "alerts").glob("*.avro"))


def test_the_real_alert_files_are_there(alerts_dir: Path) -> None:
    assert len(real_files()) >= 4  # the parametrised test below must not silently run on nothing


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_projected_and_full_decoding_give_the_same_verdicts_on_real_alerts(alerts_dir: Path, name: str) -> None:
    for path in sorted(alerts_dir.glob("*.avro")):
        projected, _ = verdicts(SOURCES[name], path, projected=True)
        full, _ = verdicts(SOURCES[name], path, projected=False)
        assert projected == full, path.name
