"""Ways out of the filter process that a hostile filter author tried (issue #10's red team), each
closed: a module planted where the next filter process would import it before its sandbox, a child
left behind by a filter process that ends itself, and replies that only serve to look alive
(replies that would raise past the protocol's checks are among the forged replies of
test_filter_process.py)."""

from __future__ import annotations

import time
from pathlib import Path

from alertfilter.decoding import DecodingSpec, visit_reader
from alertfilter.sink import H_REASON, H_VISIT

from .test_filter_process import batch, dead_letters, make_runner, outputs

__all__ = ["make_runner"]  # the fixture, shared with test_filter_process


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_package_planted_in_the_working_directory_is_never_imported_by_the_next_filter_process(
    make_runner, tmp_path, monkeypatch
):
    # The runner's working directory (the image's /tmp) is writable by the filter: it plants an
    # `alertfilter` package there, then ends its process so that a new one starts.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    marker = tmp_path / "planted-package-ran"
    planted = f"open({str(marker)!r}, 'w').close()\n"
    src = (
        "import os\n"
        "def f(alert):\n"
        "    if alert['diaSourceId'] == 0:\n"
        f"        os.makedirs({str(tmp_path / 'alertfilter')!r}, exist_ok=True)\n"
        f"        with open({str(tmp_path / 'alertfilter' / '__init__.py')!r}, 'w') as f:\n"
        f"            f.write({planted!r})\n"
        "        os._exit(7)\n"
        "    return True\n"
    )
    r = make_runner(src)
    r.process_batch(batch(3))
    assert not marker.exists()
    assert r.filters.starts == 2 and len(outputs(r)) == 2
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] == b"filter-crashed"


def test_a_child_of_a_filter_process_that_ends_itself_is_ended_too(make_runner, tmp_path):
    pid_file = tmp_path / "child.pid"
    src = (
        "import os, time\n"
        "def f(alert):\n"
        "    if os.fork() == 0:\n"
        "        os.closerange(3, 1024)  # lets go of the pipes: the runner sees its parent end\n"
        f"        open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    time.sleep(0.3)\n"
        "    os._exit(3)  # the filter process ends; its child would live on, reparented\n"
    )
    r = make_runner(src)
    r.process_batch(batch(1))
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] == b"filter-crashed"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_empty_replies_do_not_hold_off_the_hard_limit(make_runner):
    src = (
        "import os, sys, threading, time\n"
        "def _beat():\n"
        "    while True:\n"
        "        os.write(int(sys.argv[2]), b'V\\x00\\x00\\x00\\x02[]')  # a verdict frame naming no alert\n"
        "        time.sleep(0.2)\n"
        "def f(alert):\n"
        "    threading.Thread(target=_beat, daemon=True).start()\n"
        "    while True:\n"
        "        time.sleep(1)\n"
    )
    r = make_runner(src, hard=1.0)
    t0 = time.monotonic()
    r.process_batch(batch(1))
    assert time.monotonic() - t0 < 10
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] in (b"filter-timeout", b"filter-crashed")


def test_the_visit_header_is_the_runner_s_reading_not_the_filter_process_s(make_runner):
    # no cap: the visit is still read by the runner for the provenance header of what it forwards
    src = (
        "import alertfilter.processor as p\n"
        "_real = p.AlertProcessor.process_alert\n"
        "def _lie(self, alert):\n"
        "    oc = _real(self, alert)\n"
        "    oc.visit = '999999-not-the-visit'\n"
        "    return oc\n"
        "p.AlertProcessor.process_alert = _lie\n"
        "def f(alert):\n"
        "    return True\n"
    )
    r = make_runner(src)
    r.visit_of = visit_reader(DecodingSpec("container"), "diaSource.visit")  # as alertfilter run sets it
    r.process_batch(batch(3, visit=7))
    assert {d.headers[H_VISIT] for d in outputs(r)} == {b"7"}
