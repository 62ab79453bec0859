"""What ``alertfilter check`` tells its user when the filter ends its process, prints, or an
alerts file is missing: each message says what happened and where, and the counts are never lost
or corrupted. ``check`` runs as a command, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alertfilter.simulate import simulate, write_container

SIM_ARGS = ["--visit-field", "diaSource.ccdVisitId", "--id-field", "alertId", "--no-visit-cap"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 simulated alerts (lsst.alert schema), alert ids 1..10."""
    path = tmp_path_factory.mktemp("sim") / "sim.avro"
    write_container(path, simulate([100, 101], 5, cutout_bytes=64))
    return path


def check(tmp_path: Path, source: str, *args: object) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "f.py"
    f.write_text(source)
    cmd = [sys.executable, "-m", "alertfilter", "check", str(f), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_a_filter_that_ends_its_process_is_reported_at_the_alert(tmp_path: Path, sim: Path) -> None:
    src = "import os\n\ndef f(alert):\n    if alert['alertId'] == 3:\n        os._exit(7)\n    return True\n"
    r = check(tmp_path, src, "--alerts", sim, "--json", *SIM_ARGS)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["alerts"] == 10 and out["accepted"] == 9 and out["errors_by_reason"] == {"filter-crashed": 1}
    (err,) = out["first_errors"]
    assert (err["file"], err["index"], err["alert_id"]) == (str(sim), 2, 3)
    assert "exit code 7" in err["message"]


def test_a_filter_that_prints_does_not_corrupt_json(tmp_path: Path, sim: Path) -> None:
    src = "import sys\nprint('loading')\n\ndef f(alert):\n    print('seen', alert['alertId'])\n    sys.stdout.flush()\n    return True\n"
    r = check(tmp_path, src, "--alerts", sim, "--json", *SIM_ARGS)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 10  # stdout is the one JSON object
    assert "seen 1" in r.stderr and "loading" in r.stderr  # the filter's prints are not lost


def test_a_missing_alerts_file_is_said_before_anything_is_counted(tmp_path: Path, sim: Path) -> None:
    missing = tmp_path / "nope.avro"
    src = "import sys\n\ndef f(alert):\n    print('filtered', file=sys.stderr)\n    return True\n"
    r = check(tmp_path, src, "--alerts", sim, missing, "--json", *SIM_ARGS)
    assert r.returncode == 2
    assert r.stdout == ""  # no partial counts that look like the whole backtest
    assert "filtered" not in r.stderr  # said up front: no alert was filtered only to be thrown away
    assert r.stderr.strip() == f"alertfilter check: cannot read alerts: no such file: {missing}"
