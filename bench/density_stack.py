"""The moving parts of the density benchmark (``bench/density.py``): the central and the pool broker
with MirrorMaker 2 between them (as the local stack runs them), the filter runners as processes,
and what is sampled from them (CPU, memory, consumer lag, the pool broker's bytes sent).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

import throughput as tp

#: What the brokers keep of the input and lean topics: a runner further behind than this has lost
#: alerts (and long failed the 60 s requirement); it bounds the disk ~135 KB alerts take (the
#: output topics, read at the end of a step, are created with an hour's retention).
RETENTION_S = 120
#: The central broker only has to hold an alert until MirrorMaker 2 has copied it (a mirror that far
#: behind has failed the requirement).
CENTRAL_RETENTION_S = 60
#: Both brokers keep their data in memory: the shared machine's disk ran down to 1 GB free.
BROKER_DIR = Path("/dev/shm")
SEGMENT_BYTES = 64 * 1024 * 1024


# --- the brokers and the mirror ---------------------------------------------------------------------
@dataclass
class Stack:
    """A central broker, a pool broker and MirrorMaker 2 mirroring topics ``<prefix>.*`` from the
    central one to the pool (the local stack's settings: ``strimzi_standin._mm2_properties``)."""

    workdir: Path
    prefix: str
    central: Any = None
    pool: Any = None
    mirror: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None

    def start(self) -> Stack:
        from alertfilter_devstack.kafka import KafkaBroker

        retention = {
            "log.retention.ms": str(RETENTION_S * 1000),
            "log.segment.bytes": str(SEGMENT_BYTES),
            "log.retention.check.interval.ms": "10000",
            "log.segment.delete.delay.ms": "1000",
        }
        central_config = {**retention, "log.retention.ms": str(CENTRAL_RETENTION_S * 1000)}
        self.data_dir = Path(tempfile.mkdtemp(prefix="alertfilter-density-", dir=BROKER_DIR))
        self.central = KafkaBroker(self.data_dir / "central", heap="768m", extra_config=central_config).start()
        # The pool stamps records with their arrival (MirrorMaker 2 keeps the central timestamps): its
        # retention then counts from when an alert reached the pool, and an output record's time is
        # when it reached its topic.
        pool_config = {**retention, "log.message.timestamp.type": "LogAppendTime"}
        self.pool = KafkaBroker(self.data_dir / "pool", heap="1g", extra_config=pool_config).start()
        self.mirror = start_mirror(
            self.workdir / "mirror", self.central.bootstrap, self.pool.bootstrap, f"{re.escape(self.prefix)}.*"
        )
        return self

    def pids(self) -> dict[str, int]:
        """The JVMs' process ids by role."""
        out = {}
        for name, p in (
            ("central broker", self.central and self.central.proc),
            ("pool broker", self.pool and self.pool.proc),
            ("MirrorMaker 2", self.mirror),
        ):
            if p is not None:
                out[name] = p.pid
        return out

    def stop(self) -> None:
        from alertfilter_devstack.procs import stop_process

        if self.mirror is not None:
            stop_process(self.mirror, grace_s=20)
        for b in (self.pool, self.central):
            if b is not None:
                b.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_mirror(workdir: Path, central: str, pool: str, pattern: str) -> subprocess.Popen[bytes]:
    """MirrorMaker 2 from ``central`` to ``pool`` for topics matching ``pattern``, with the local
    stack's properties (the stand-in's builder, given the stand-in's environment)."""
    from alertfilter_devstack import strimzi_standin
    from alertfilter_devstack.kafka import java_bin, kafka_libs

    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["DEVSTACK_POOL_BOOTSTRAP"] = pool  # the stand-in reads its target from here
    os.environ.pop("DEVSTACK_CREDENTIALS", None)  # brokers without authentication
    spec = {
        "target": {"alias": "pool"},
        "mirrors": [
            {
                "source": {"alias": "central", "bootstrapServers": central},
                "topicsPattern": pattern,
                "sourceConnector": {"tasksMax": 1},
            }
        ],
    }
    props = strimzi_standin._mm2_properties("density", spec, workdir)
    log4j = workdir / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\nappender.out.type=Console\n"
        "appender.out.name=OUT\nappender.out.layout.type=PatternLayout\n"
        "appender.out.layout.pattern=[%d] %p %m (%c)%n\n"
    )
    with open(workdir / "mirror.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                java_bin(),
                "-Xmx512m",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                f"{kafka_libs()}/*",
                "org.apache.kafka.connect.mirror.MirrorMaker",
                str(props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_for_topic(bootstrap: str, topic: str, timeout_s: float) -> None:
    """Wait until ``topic`` exists on ``bootstrap`` (MirrorMaker 2 creates a mirrored one).

    Raises:
        RuntimeError: not there after ``timeout_s``.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if topic in admin.list_topics(timeout=10).topics:
            return
        time.sleep(1)
    raise RuntimeError(f"topic {topic} not on {bootstrap} after {timeout_s:.0f} s")


# --- runner processes -------------------------------------------------------------------------------
@dataclass
class RunnerProc:
    """One ``alertfilter run`` process (and, below it, its filter process), as one pod runs it."""

    index: int
    kind: str
    residue: int
    group: str
    input_topic: str
    output: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def assigned(self) -> bool:
        """True once the runner logged its partition assignment."""
        try:
            return " assigned " in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def tree(self) -> list[int]:
        return [self.proc.pid, *tp.descendants(self.proc.pid)]


def start_runner(
    index: int,
    kind: str,
    residue: int,
    source: str,
    args: list[str],
    work: Path,
    output: str,
    input_topic: str,
    env: dict[str, str],
) -> RunnerProc:
    """Start ``python -m alertfilter run`` with ``args`` and the filter ``source`` in environment
    ``env``; its log in ``work``."""
    flt = work / f"filter-{index}.py"
    flt.write_text(source)
    log_path = work / f"runner-{index}.log"
    group = f"density-{work.name}-{index}"
    cmd = [
        sys.executable,
        "-m",
        "alertfilter",
        "run",
        "--filter",
        str(flt),
        "--group",
        group,
        "--output",
        output,
        "--name",
        f"{kind}-{index}",
        *args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return RunnerProc(index, kind, residue, group, input_topic, output, log_path, proc)


def stop_procs(procs: list[subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    """SIGTERM every process (a runner commits and stops its filter process), SIGKILL what is left
    after ``grace_s``, with the processes each had started."""
    trees = {p.pid: tp.descendants(p.pid) for p in procs}
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    for kids in trees.values():
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- sampling ---------------------------------------------------------------------------------------
def mem_available() -> float:
    """The machine's available memory (``MemAvailable``), bytes; the brokers' data is in memory too."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    return 0.0


def memory_kib(pid: int) -> tuple[int, int]:
    """``(PSS, peak RSS)`` of a process, KiB (0, 0 when it is gone). PSS shares the shared-memory
    regions of the runner and its filter process fairly, so their sum is what a pod holds."""
    pss = hwm = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                    break
    except OSError:
        pass
    return pss, hwm


def tcp_bytes(port: int) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(local, peer): (bytes acked, bytes received)}`` of the established TCP connections on local
    ``port`` (what the broker listening there sent and received), from ``ss -tin``."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, timeout=20
    ).stdout
    conns: dict[tuple[str, str], tuple[int, int]] = {}
    key: tuple[str, str] | None = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            f = line.split()
            key = (f[-2], f[-1]) if len(f) >= 2 else None
            continue
        if key is not None:
            acked = re.search(r"bytes_acked:(\d+)", line)
            recv = re.search(r"bytes_received:(\d+)", line)
            conns[key] = (int(acked.group(1)) if acked else 0, int(recv.group(1)) if recv else 0)
            key = None
    return conns


@dataclass
class Sampler:
    """Samples, every call of :meth:`sample`: CPU seconds of each runner's process tree and of the
    named other processes, the pool broker's cumulative TCP bytes sent and received, the machine's
    busy CPU time; every ``memory_every``-th call, each runner's PSS and peak RSS."""

    runners: list[RunnerProc]
    others: dict[str, int]
    pool_port: int
    memory_every: int = 5
    times: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    pss_max_kib: dict[int, int] = field(default_factory=dict)
    hwm_max_kib: dict[int, int] = field(default_factory=dict)
    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    _conns: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    _calls: int = 0

    def sample(self) -> None:
        t = time.time()
        values: dict[str, float] = {"machine": tp.machine_busy_seconds()}
        for r in self.runners:
            tree = r.tree()
            values[f"runner-{r.index}"] = sum(c for c in map(tp.cpu_seconds, tree) if c is not None)
            if self._calls % self.memory_every == 0:
                mem = [memory_kib(p) for p in tree]
                self.pss_max_kib[r.index] = max(self.pss_max_kib.get(r.index, 0), sum(m[0] for m in mem))
                self.hwm_max_kib[r.index] = max(self.hwm_max_kib.get(r.index, 0), sum(m[1] for m in mem))
        for name, pid in self.others.items():
            values[name] = tp.cpu_seconds(pid) or (self.cpu[name][-1] if self.cpu.get(name) else 0.0)
        try:
            for key, val in tcp_bytes(self.pool_port).items():  # closed connections keep their last count
                self._conns[key] = val
        except (OSError, subprocess.SubprocessError):
            pass
        self._calls += 1
        self.times.append(t)
        for name, v in values.items():
            self.cpu.setdefault(name, []).append(v)
        self.sent.append(sum(v[0] for v in self._conns.values()))
        self.received.append(sum(v[1] for v in self._conns.values()))

    def at(self, series: list[float] | list[int], t: float) -> float:
        """``series`` (sampled at ``self.times``) at time ``t``, linearly interpolated."""
        ts = self.times
        if not ts:
            return float("nan")
        if t <= ts[0]:
            return float(series[0])
        for i in range(1, len(ts)):
            if ts[i] >= t:
                w = (t - ts[i - 1]) / (ts[i] - ts[i - 1]) if ts[i] > ts[i - 1] else 1.0
                return float(series[i - 1] + w * (series[i] - series[i - 1]))
        return float(series[-1])

    def rate(self, name: str, t0: float, t1: float) -> float | None:
        """CPU cores used by ``name`` (``runner-<i>``, a role, ``machine``) over ``[t0, t1]``."""
        if name not in self.cpu or t1 <= t0:
            return None
        return (self.at(self.cpu[name], t1) - self.at(self.cpu[name], t0)) / (t1 - t0)


# --- consumer progress -------------------------------------------------------------------------------
def end_offset(client: Consumer, topic: str, partitions: int = 1) -> int:
    """Sum of the end offsets of ``topic``'s partitions (0 while it does not exist)."""
    total = 0
    for p in range(partitions):
        try:
            total += client.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
        except KafkaException:
            return 0
    return total


def committed(admin: AdminClient, groups: list[str]) -> dict[str, int]:
    """Each group's committed offsets, summed over partitions (0 before its first commit)."""
    out = dict.fromkeys(groups, 0)
    futs = {}
    for g in groups:  # one group per request: the admin client takes one at a time here
        futs.update(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)], request_timeout=10))
    for g, fut in futs.items():
        with contextlib.suppress(KafkaException):
            out[g] = sum(max(t.offset, 0) for t in fut.result().topic_partitions)
    return out
