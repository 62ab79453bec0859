"""Helpers for integration tests: produce real alerts, run the runner as a process, read topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from alertfilter.codecs import encode_confluent, read_container
from alertfilter.kafkautil import ensure_topics


@dataclass
class Record:
    value: bytes | None
    key: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp: int = -1  # ms since the epoch, as the broker holds it (-1: none)


def produce_values(bootstrap: str, topic: str, values: list[bytes], partitions: int = 1) -> None:
    ensure_topics(bootstrap, {topic: partitions})
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16 * 1024 * 1024, "linger.ms": 5})
    for v in values:
        p.produce(topic, v)
        p.poll(0)
    assert p.flush(30) == 0


def encode_files(files: list[Path], schema_dir: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Records and their Confluent-framed values (schema id from the Rubin name); schemas written to schema_dir."""
    import json

    from alertfilter.schemas import rubin_schema_id

    records, values = [], []
    schema_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        schema, recs = read_container(str(f))
        sid = rubin_schema_id(schema["name"])
        assert sid is not None, schema["name"]
        (schema_dir / f"{sid}.avsc").write_text(json.dumps(schema))
        parsed = fastavro.parse_schema(schema)
        records += recs
        values += [encode_confluent(r, parsed, sid) for r in recs]
    return records, values


def read_topic(bootstrap: str, topic: str, read_committed: bool = True, idle_s: float = 3.0) -> list[Record]:
    """Every record of ``topic`` from the beginning, in partition/offset order."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        c.close()
        return []
    c.assign([TopicPartition(topic, p, -2) for p in md.partitions])
    out: list[Record] = []
    eof: set[int] = set()
    last = time.monotonic()
    while time.monotonic() - last < idle_s and len(eof) < len(md.partitions):
        for m in c.consume(500, 0.5):
            err, partition, offset = m.error(), m.partition() or 0, m.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(partition)
                continue
            eof.discard(partition)
            last = time.monotonic()
            headers = cast(dict[str, bytes], dict(m.headers() or []))
            out.append(Record(m.value(), m.key(), headers, partition, offset, m.timestamp()[1]))
    c.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


class RunnerProcess:
    """``alertfilter run`` as a child process, as in a pod."""

    def __init__(
        self,
        bootstrap: str,
        input_topic: str,
        output: str,
        filter_path: Path,
        schema_dir: Path,
        log_path: Path,
        *extra: str,
        group: str | None = None,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "alertfilter",
            "run",
            "--bootstrap-servers",
            bootstrap,
            "--input",
            input_topic,
            "--output",
            output,
            "--filter",
            str(filter_path),
            "--schema-dir",
            str(schema_dir),
            "--group",
            group or f"g-{output}",
            "--metrics-port",
            "-1",
            *extra,
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        # what the operator does through Strimzi KafkaTopics
        ensure_topics(bootstrap, {output: 1, f"{output}.deadletter": 1})

    def start(self) -> RunnerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(  # a process group of its own, as in a pod
                self.args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return self

    def wait(self, timeout: float = 180) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"runner did not finish in {timeout} s; log:\n{self.log()}") from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def run_to_idle(self, idle_s: float = 3.0, timeout: float = 240) -> int:
        self.args += ["--exit-when-idle", str(idle_s)]
        self.start()
        rc = self.wait(timeout)
        self.args = self.args[:-2]
        return rc


def committed(bootstrap: str, topic: str, group: str) -> list[tuple[int, str | None]]:
    """The group's committed ``(offset, metadata)`` of each partition of ``topic`` (offset < 0: none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        tps = c.committed([TopicPartition(topic, p) for p in sorted(md.partitions)], timeout=10)
        return [(tp.offset, tp.metadata) for tp in tps]
    finally:
        c.close()
