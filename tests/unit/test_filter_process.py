"""The filter in a process of its own, tried as a hostile filter author would: the runner's rules
(the per-visit cap, the time limit, the stop, the producer, the credentials) hold, and an alert that
kills the filter process is dead-lettered as ``filter-crashed`` while the runner goes on.

The Kafka clients are fakes (see kafka_fakes.py); the filter process is real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.decoding import DecodingSpec, visit_reader
from alertfilter.filterspec import FilterLoadError, FilterSpec
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings
from alertfilter.sink import H_ALERT_ID, H_MESSAGE, H_REASON, H_SRC_OFFSET, H_VISIT
from alertfilter.supervisor import FilterProcess

from .kafka_fakes import FakeConsumer, FakeProducer, Msg, container


@pytest.fixture
def make_runner(monkeypatch):
    monkeypatch.setattr(FakeProducer, "topic_limits", {})
    made: list[Runner] = []

    def make(src: str, cap: int | None = None, hard: float = 0.0, budget: float = 0.0, memory: int = 0) -> Runner:
        spec = FilterSpec(
            src, None, DecodingSpec("container"), "diaSource.visit", "diaSourceId", budget, memory_limit_bytes=memory
        )
        filters = FilterProcess(spec, hard)
        filters.start()
        settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g", hard_timeout_s=hard)
        clients = KafkaClients(FakeConsumer({}), FakeProducer({"message.max.bytes": settings.max_message_bytes}))
        r = Runner(settings, clients, filters, VisitCap(cap), "f", "0" * 64)
        r.on_assign(r.consumer, [TopicPartition("in", 0)])
        made.append(r)
        return r

    yield make
    for r in made:
        r.filters.close()


def batch(n: int, visit: int = 1) -> list[Msg]:
    return [Msg(i, container(i, visit=visit)) for i in range(n)]


def outputs(r: Runner) -> list[Any]:
    return [d for d in r.producer.delivered if d.topic() == "out"]


def dead_letters(r: Runner) -> list[Any]:
    return [d for d in r.producer.delivered if d.topic() == "out.deadletter"]


# --- the cap is the runner's -----------------------------------------------------------------------------
def test_patching_the_cap_in_the_filter_does_not_lift_it(make_runner):
    src = (
        "import alertfilter.cap, alertfilter.runner\n"
        "alertfilter.cap.VisitCap.admit = lambda self, visit: True\n"
        "def f(alert):\n"
        "    alertfilter.cap.VisitCap.admit = lambda self, visit: True\n"
        "    return True\n"
    )
    r = make_runner(src, cap=1)
    r.process_batch(batch(300))
    assert len(outputs(r)) == 1 and r.totals["capped"] == 299


# --- the time limit and the stop are the runner's ---------------------------------------------------------
def test_a_filter_that_ignores_its_budget_signal_is_ended_at_the_hard_limit(make_runner, caplog):
    src = (
        "import signal\n"
        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "signal.setitimer = lambda *a, **k: (0.0, 0.0)\n"
        "def f(alert):\n"
        "    while alert['diaSourceId'] == 2:\n"
        "        pass\n"
        "    return True\n"
    )
    r = make_runner(src, hard=2.0, budget=0.5)
    t0 = time.monotonic()
    r.process_batch(batch(5))
    assert time.monotonic() - t0 < 10
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] == b"filter-timeout" and dl.headers[H_SRC_OFFSET] == b"2"
    assert dl.headers[H_ALERT_ID] == b"2"
    assert dl.headers[H_MESSAGE] == b"did not return within the hard limit of 2 s; the filter process was replaced"
    assert len(outputs(r)) == 4 and r.consumer.commits[-1][0].offset == 5
    assert r.filters.starts == 2  # a new filter process took the rest of the batch


def test_a_filter_blocked_in_a_c_call_is_ended_at_the_hard_limit(make_runner):
    src = "def f(alert):\n    return sum(range(10**12)) > 0 if alert['diaSourceId'] == 1 else True\n"
    r = make_runner(src, hard=1.5, budget=0.5)
    r.process_batch(batch(3))
    assert [d.headers[H_REASON] for d in dead_letters(r)] == [b"filter-timeout"]
    assert len(outputs(r)) == 2


def test_a_filter_that_ignores_sigterm_does_not_delay_the_stop(make_runner):
    src = (
        "import signal, time\n"
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "def f(alert):\n"
        "    time.sleep(0.3)\n"
        "    return True\n"
    )
    r = make_runner(src, hard=60.0)
    threading.Timer(1.0, r.stop).start()  # SIGTERM, as when the pod is deleted
    t0 = time.monotonic()
    r.process_batch(batch(100))
    r.filters.close()
    assert time.monotonic() - t0 < 3
    done = r.consumer.commits[-1][0].offset
    assert 0 < done < 10 and len(outputs(r)) == done


# --- nothing of the runner is within reach ------------------------------------------------------------------
def test_the_filter_cannot_reach_the_runners_producer(make_runner):
    src = (
        "import gc\n"
        "def f(alert):\n"
        "    found = [o for o in gc.get_objects() if type(o).__name__ in ('Producer', 'Runner', 'Sink')]\n"
        "    for o in found:\n"
        "        getattr(o, 'produce', lambda *a, **k: None)('out', b'forged')\n"
        "    return bool(found)\n"
    )
    r = make_runner(src)
    r.process_batch(batch(3))
    assert r.totals["rejected"] == 3 and r.producer.delivered == []


SNOOP = (
    "import os\n"
    "def _read(path):\n"
    "    try:\n"
    "        with open(path, 'rb') as fh:\n"
    "            return fh.read()\n"
    "    except OSError:\n"
    "        return b''\n"
    "seen = [k for k in os.environ if k.startswith('ALERTFILTER')]\n"
    "for path in ('/proc/self/environ', f'/proc/{os.getppid()}/environ', f'/proc/{os.getppid()}/mem'):\n"
    "    if b's3cret-pw' in _read(path):\n"
    "        seen.append(path)\n"
    "if seen:\n"
    "    raise RuntimeError('found ' + ', '.join(seen))\n"
    "def f(alert):\n"
    "    return False\n"
)

RUNNER = (
    "import sys\n"
    "from alertfilter.decoding import DecodingSpec\n"
    "from alertfilter.filterspec import FilterLoadError, FilterSpec\n"
    "from alertfilter.supervisor import FilterProcess\n"
    "fp = FilterProcess(FilterSpec(sys.stdin.read(), None, DecodingSpec('container'), 'diaSource.visit', 'x', 1.0))\n"
    "try:\n"
    "    fp.start()\n"
    "    print('nothing found')\n"
    "except FilterLoadError as exc:\n"
    "    print(exc.message)\n"
    "fp.close()\n"
)


@pytest.mark.parametrize("capabilities", ["as the user runs it", "without capabilities, as in a pod"])
def test_the_filter_cannot_read_the_kafka_credentials(capabilities):
    # The runner is a process of its own here: credentials come in its initial environment, as in a pod.
    env = {**os.environ, "ALERTFILTER_KAFKA_SASL_PASSWORD": "s3cret-pw", "ALERTFILTER_BOOTSTRAP_SERVERS": "k:9092"}
    cmd = [sys.executable, "-c", RUNNER]
    if capabilities != "as the user runs it" and os.geteuid() == 0:  # a non-root user has none already
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop the runner's capabilities"
        cmd = [setpriv, "--bounding-set=-all", "--inh-caps=-all", *cmd]
    out = subprocess.run(cmd, input=SNOOP, capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "nothing found", out.stdout + out.stderr


# --- an alert that kills the filter process is a dead letter; the runner goes on -----------------------------
@pytest.mark.parametrize(
    ("kill", "how"),
    [
        ("os._exit(3)", b"exit code 3"),
        ("os.kill(os.getpid(), signal.SIGKILL)", b"signal 9 (SIGKILL)"),
        ("ctypes.string_at(0)", b"signal 11 (SIGSEGV)"),
        ("os.abort()", b"signal 6 (SIGABRT)"),
    ],
)
def test_an_alert_that_kills_the_filter_process_is_dead_lettered(make_runner, kill, how):
    src = (
        "import ctypes, os, signal\n"
        "def f(alert):\n"
        f"    if alert['diaSourceId'] == 1:\n        {kill}\n"
        "    return True\n"
    )
    r = make_runner(src)
    msgs = batch(4)
    r.process_batch(msgs)
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] == b"filter-crashed" and dl.headers[H_SRC_OFFSET] == b"1"
    assert dl.headers[H_ALERT_ID] == b"1" and how in dl.headers[H_MESSAGE]
    assert dl.value == msgs[1].value()  # the original message, to replay
    assert len(outputs(r)) == 3 and r.consumer.commits[-1][0].offset == 4
    assert r.totals["errors"] == 1 and r.filters.starts == 2


def test_a_filter_that_crashes_on_every_alert_dead_letters_each_and_the_runner_goes_on(make_runner):
    r = make_runner("import os\ndef f(alert):\n    os._exit(0)\n")
    r.process_batch(batch(3))
    assert [d.headers[H_REASON] for d in dead_letters(r)] == [b"filter-crashed"] * 3
    assert b"exit code 0" in dead_letters(r)[0].headers[H_MESSAGE]
    assert r.consumer.commits[-1][0].offset == 3


def test_an_allocation_past_the_memory_limit_is_an_error_of_that_alert(make_runner):
    src = "def f(alert):\n    if alert['diaSourceId'] == 0:\n        b'x' * (8 << 30)\n    return True\n"
    r = make_runner(src, memory=1 << 30)
    r.process_batch(batch(3))
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] == b"filter-exception" and b"MemoryError" in dl.headers[H_MESSAGE]
    assert len(outputs(r)) == 2


# --- loading ------------------------------------------------------------------------------------------------
def test_a_filter_that_cannot_be_loaded_says_where():
    fp = FilterProcess(
        FilterSpec(
            "import no_such_module\ndef f(a):\n    return True\n",
            None,
            DecodingSpec("container"),
            "diaSource.visit",
            "diaSourceId",
            1.0,
        )
    )
    with pytest.raises(FilterLoadError) as ei:
        fp.start()
    assert ei.value.line == 1 and "no_such_module" in ei.value.message


def test_values_that_do_not_fit_the_shared_region_travel_in_the_pipe():
    fp = FilterProcess(
        FilterSpec(
            "def f(a):\n    return a['diaSourceId'] % 2 == 0\n",
            None,
            DecodingSpec("container"),
            "diaSource.visit",
            "diaSourceId",
            1.0,
        ),
        region_bytes=2000,
    )
    try:
        fp.start()
        values = [container(i, pad=700) for i in range(6)]  # about three fit the region
        kinds = [oc.kind for oc in fp.verdicts(values)]
        assert kinds == ["accepted", "rejected"] * 3
    finally:
        fp.close()


def _verdict_frame(payload: bytes) -> bytes:
    return b"V" + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize(
    "reply",
    [
        b"V\x00\x00\x00\x05junk!",  # not JSON
        b'V\x00\x00\x00\x1c[["capped","","",1,1,0.0]]   ',  # a kind only the runner gives
        b"V\xff\xff\xff\xff",  # a frame larger than any reply may be
        _verdict_frame(b'[["accepted","","",1,1,1' + b"0" * 400 + b"]]"),  # a filter time past float's range
        _verdict_frame(b"[" * 200_000),  # nested past the JSON parser's stack
    ],
)
def test_a_forged_reply_is_a_crash_of_that_alert_not_of_the_runner(make_runner, reply):
    src = (
        "import os, sys\n"
        "def f(alert):\n"
        "    if alert['diaSourceId'] == 1:\n"
        f"        os.write(int(sys.argv[2]), {reply!r})  # the reply pipe, named on its command line\n"
        "        import time; time.sleep(5)\n"
        "    return True\n"
    )
    r = make_runner(src)
    r.process_batch(batch(3))
    (dl,) = dead_letters(r)
    assert dl.headers[H_REASON] == b"filter-crashed" and b"broke the protocol" in dl.headers[H_MESSAGE]
    assert len(outputs(r)) == 2 and r.consumer.commits[-1][0].offset == 3


def test_a_filter_process_that_misreports_visits_does_not_lift_the_cap(make_runner):
    # The filter rewrites its own process's processor so that each verdict names a visit of its own.
    src = (
        "import itertools\n"
        "import alertfilter.processor as p\n"
        "_n = itertools.count()\n"
        "_real = p.AlertProcessor.process_alert\n"
        "def _lie(self, alert):\n"
        "    oc = _real(self, alert)\n"
        "    oc.visit = next(_n)\n"
        "    return oc\n"
        "p.AlertProcessor.process_alert = _lie\n"
        "def f(alert):\n"
        "    return True\n"
    )
    r = make_runner(src, cap=2)
    r.visit_of = visit_reader(DecodingSpec("container"), "diaSource.visit")  # as alertfilter run sets it
    r.process_batch(batch(50, visit=7))
    assert len(outputs(r)) == 2 and r.totals["capped"] == 48
    assert {d.headers[H_VISIT] for d in outputs(r)} == {b"7"}


def test_a_filter_process_that_ends_between_batches_is_replaced_without_a_dead_letter(make_runner):
    src = (
        "import os, threading\n"
        "def f(alert):\n"
        "    threading.Timer(0.2, os._exit, (0,)).start()  # ends its process a little after the batch\n"
        "    return True\n"
    )
    r = make_runner(src)
    r.process_batch([Msg(0, container(0))])
    time.sleep(1.0)
    r.process_batch([Msg(1, container(1))])
    assert dead_letters(r) == [] and len(outputs(r)) == 2 and r.filters.starts == 2


def test_a_filter_that_rewrites_its_progress_page_is_still_ended_at_the_hard_limit(make_runner):
    # The progress page is mapped into the filter process; a hostile filter keeps moving its
    # position to hold off the hard limit, then never returns.
    src = (
        "import mmap, struct, sys, threading, time\n"
        "page = mmap.mmap(int(sys.argv[3]), 4096)\n"
        "def _spin():\n"
        "    i = 0\n"
        "    while True:\n"
        "        i += 1\n"
        "        struct.pack_into('<QIH', page, 0, 1, i % 100000, 0)\n"
        "        time.sleep(0.01)\n"
        "def f(alert):\n"
        "    if alert['diaSourceId'] == 2:\n"
        "        threading.Thread(target=_spin, daemon=True).start()\n"
        "        while True:\n"
        "            time.sleep(1)\n"
        "    return True\n"
    )
    r = make_runner(src, hard=1.0)
    t0 = time.monotonic()
    r.process_batch(batch(5))
    assert time.monotonic() - t0 < 10
    dls = dead_letters(r)
    # the limit fires; a filter that lies about its position can only get more of its own alerts
    # dead-lettered with the one it hangs on, never hold the runner
    assert {d.headers[H_REASON] for d in dls} == {b"filter-timeout"}
    assert b"2" in {d.headers[H_SRC_OFFSET] for d in dls}
    assert len(outputs(r)) + len(dls) == 5 and r.consumer.commits[-1][0].offset == 5


def test_a_child_of_the_filter_cannot_start_a_session_that_would_outlive_it(make_runner):
    # accepted only when the child's setsid() was refused
    src = (
        "import os\n"
        "def f(alert):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            os.setsid()\n"
        "        except PermissionError:\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 1\n"
    )
    r = make_runner(src)
    r.process_batch(batch(2))
    assert not dead_letters(r) and len(outputs(r)) == 2
