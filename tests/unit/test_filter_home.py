"""The filter process's HOME (issue #15, a scientific runtime): science packages keep caches and
settings under HOME, and the runner image's user has none (/nonexistent), so a filter process
without a writable HOME gets a private one, removed with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alertfilter.decoding import DecodingSpec
from alertfilter.filterenv import filter_home
from alertfilter.filterspec import FilterSpec
from alertfilter.outcome import Kind
from alertfilter.supervisor import FilterProcess

ALERT = (Path(__file__).resolve().parents[1] / "data" / "sim-lsst-alert-1.avro").read_bytes()
WRITES_HOME = """import os, pathlib

def writes_home(alert):
    home = pathlib.Path(os.environ["HOME"])
    (home / ".cache").mkdir(exist_ok=True)
    (home / ".cache" / "x").write_text("cached")
    return str(home).startswith(os.environ.get("EXPECT_HOME_UNDER", "/"))
"""


def _process() -> FilterProcess:
    spec = FilterSpec(WRITES_HOME, None, DecodingSpec("container"), "diaSource.ccdVisitId", "alertId", 5.0)
    return FilterProcess(spec)


def test_without_a_writable_home_the_filter_process_gets_its_own_and_it_goes_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/nonexistent")
    fp = _process()
    fp.start()
    home = fp._home
    try:
        assert home is not None and Path(home).is_dir() and oct(Path(home).stat().st_mode & 0o777) == "0o700"
        (outcome,) = list(fp.verdicts([ALERT]))
        assert outcome.kind == Kind.ACCEPTED, outcome
        assert (Path(home) / ".cache" / "x").read_text() == "cached"
    finally:
        fp.close()
    assert not os.path.exists(home)


def test_a_writable_home_is_kept(tmp_path: Path) -> None:
    assert filter_home({"HOME": str(tmp_path)}) is None
    made = filter_home({"HOME": str(tmp_path / "missing")})
    assert made is not None and made != str(tmp_path)
    os.rmdir(made)
