"""A hostile filter cannot end, stop, trace or reconfigure the runner that runs it (same uid): each
attempt fails inside the filter (``filter-exception``, a PermissionError), the filter ending its
own process is ``filter-crashed``, and every other alert is accepted or rejected as usual.

The runner under attack runs in a child process (with the fake Kafka clients of kafka_fakes.py
and a real filter process), so that a sandbox that fails ends that child, not the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alertfilter.sandbox import ARCHES, program

HERE = Path(__file__).resolve().parent

#: Alert id -> what the filter does on that alert; each must fail inside the filter.
ATTACKS = {
    1: "os.kill(os.getppid(), signal.SIGKILL)",
    2: "os.kill(os.getppid(), signal.SIGTERM)",
    3: "os.kill(os.getppid(), signal.SIGSTOP)",
    4: "os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
    5: "os.kill(-1, 0)",  # every process it may signal (signal 0: the refusal is the proof, nothing is sent)
    6: "os.kill(0, signal.SIGKILL)",  # its own process group: refused too
    7: "call('tgkill', os.getppid(), os.getppid(), signal.SIGKILL)",
    8: "call('tkill', os.getppid(), signal.SIGKILL)",
    9: "call('rt_sigqueueinfo', os.getppid(), signal.SIGKILL, siginfo(signal.SIGKILL))",
    10: "os.pidfd_open(os.getppid())",
    11: "call('pidfd_send_signal', os.open(f'/proc/{os.getppid()}', os.O_RDONLY), signal.SIGKILL, 0, 0)",
    12: "call('ptrace', 16, os.getppid(), 0, 0)",  # PTRACE_ATTACH
    13: "vm_write(os.getppid())",
    14: "resource.prlimit(os.getppid(), resource.RLIMIT_CPU, (1, 1))",  # SIGKILL after 1 CPU-second
    15: "sigio(os.getppid())",  # SIGIO's default action ends a process
    16: "os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)",
    17: "os.sched_setaffinity(os.getppid(), {0})",
}
SELF_KILL = 18
SELF_SIGNALS = 19

HOSTILE = (
    "import ctypes, fcntl, os, platform, resource, signal, threading, time\n"
    "from alertfilter.sandbox import ARCHES\n"
    "NR = ARCHES[platform.machine()].nr\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def call(name, *args):\n"
    "    if libc.syscall(NR[name], *(ctypes.c_long(a) for a in args)) == -1:\n"
    "        e = ctypes.get_errno()\n"
    "        raise OSError(e, os.strerror(e))\n"
    "def siginfo(sig):\n"
    "    buf = ctypes.create_string_buffer(128)\n"
    "    ctypes.memmove(buf, (ctypes.c_int * 3)(sig, 0, -1), 12)  # si_code SI_QUEUE\n"
    "    return ctypes.addressof(buf)\n"
    "def vm_write(pid):\n"
    "    data = ctypes.create_string_buffer(8)\n"
    "    iov = (ctypes.c_void_p * 2)(ctypes.addressof(data), 8)\n"
    "    call('process_vm_writev', pid, ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0)\n"
    "def sigio(pid):\n"
    "    r, w = os.pipe()\n"
    "    fcntl.fcntl(r, fcntl.F_SETOWN, pid)\n"
    "    fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)\n"
    "    os.write(w, b'x')\n"
    "def own_signals():\n"
    "    got = []\n"
    "    signal.signal(signal.SIGUSR2, lambda *a: got.append(1))\n"
    "    os.kill(os.getpid(), signal.SIGUSR2)\n"
    "    signal.raise_signal(signal.SIGUSR2)\n"
    "    main = threading.main_thread().ident\n"
    "    t = threading.Thread(target=signal.pthread_kill, args=(main, signal.SIGUSR2))\n"
    "    t.start(); t.join()\n"
    "    time.sleep(0.05)  # let the handler run\n"
    "    return len(got) == 3\n"
    "ATTACKS = {\n" + "".join(f"    {i}: lambda: {code},\n" for i, code in ATTACKS.items()) + "}\n"
    "def f(alert):\n"
    "    i = alert['diaSourceId']\n"
    "    if i in ATTACKS:\n"
    "        ATTACKS[i]()\n"
    "        return True  # not refused: the test fails on this alert\n"
    f"    if i == {SELF_KILL}:\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    f"    if i == {SELF_SIGNALS}:\n"
    "        return own_signals()\n"
    "    return i % 2 == 0\n"
)

#: The runner under attack: filters alerts 0..N-1 (ids = offsets) and prints what it produced.
RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from confluent_kafka import TopicPartition
from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.decoding import DecodingSpec
from alertfilter.filterspec import FilterSpec
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings
from alertfilter.supervisor import FilterProcess
from kafka_fakes import FakeConsumer, FakeProducer, Msg, container

spec = FilterSpec(sys.stdin.read(), "f", DecodingSpec("container"), "diaSource.visit", "diaSourceId", 0.0)
filters = FilterProcess(spec, 20.0)
filters.start()
settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g", hard_timeout_s=20.0)
clients = KafkaClients(FakeConsumer({}), FakeProducer({"message.max.bytes": settings.max_message_bytes}))
r = Runner(settings, clients, filters, VisitCap(None), "f", "0" * 64)
r.on_assign(r.consumer, [TopicPartition("in", 0)])
values = [container(i) for i in range(int(sys.argv[2]))]
r.process_batch([Msg(i, v) for i, v in enumerate(values)])
filters.close()
print(json.dumps({
    "records": [
        [d.topic(), values.index(d.value),
         d.headers.get("alertfilter.error.reason", b"").decode(),
         d.headers.get("alertfilter.error.message", b"").decode()]
        for d in r.producer.delivered
    ],
    "committed": r.consumer.commits[-1][0].offset,
    "starts": filters.starts,
}))
"""


@pytest.fixture(scope="module")
def attacked() -> dict[str, Any]:
    """What the attacked runner produced: ``records`` ``[topic, offset, reason, message]``,
    ``committed`` (the last committed offset), ``starts`` (filter processes), ``n`` (alerts)."""
    n = SELF_SIGNALS + 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(HERE), str(n)],
        input=HOSTILE,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        start_new_session=True,  # its process group is its own: a failed sandbox ends nothing else
    )
    assert proc.returncode == 0, f"the runner died or failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    result["n"] = n
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux's")
@pytest.mark.parametrize(("alert", "attack"), sorted(ATTACKS.items()))
def test_an_attack_on_the_runner_fails_inside_the_filter(attacked, alert, attack):
    (rec,) = [r for r in attacked["records"] if r[1] == alert]
    topic, _, reason, message = rec
    assert (topic, reason) == ("out.deadletter", "filter-exception"), f"{attack}: {rec}"
    assert "PermissionError" in message or "Operation not permitted" in message, message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux's")
def test_the_runner_goes_on_with_every_other_alert(attacked):
    recs = {r[1]: r for r in attacked["records"]}
    benign = [i for i in range(attacked["n"]) if i not in ATTACKS and i not in (SELF_KILL, SELF_SIGNALS)]
    assert [i for i in benign if i in recs] == [i for i in benign if i % 2 == 0]  # even ids accepted
    assert all(recs[i][0] == "out" for i in benign if i % 2 == 0)
    assert recs[SELF_SIGNALS][0] == "out"  # signals to its own process and threads still work
    assert attacked["committed"] == attacked["n"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux's")
def test_a_filter_that_kills_its_own_process_is_filter_crashed(attacked):
    (rec,) = [r for r in attacked["records"] if r[1] == SELF_KILL]
    assert rec[0] == "out.deadletter" and rec[2] == "filter-crashed" and "SIGKILL" in rec[3]
    assert attacked["starts"] == 2  # a new filter process took the alerts after it


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_every_architecture_has_a_program_the_kernel_can_take(machine):
    code = program(ARCHES[machine], 12345)
    assert len(code) % 8 == 0 and len(code) // 8 < 4096  # BPF_MAXINSNS
