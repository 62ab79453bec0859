"""Lean streams on a real broker: ``alertfilter lean`` copies the full stream with null cutouts, and
the same filters give the same outputs, message by message, on the full and on the lean path (the
lean path forwards each accepted alert's original, fetched from the full stream); an original that
is gone becomes a dead letter with the reason."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from alertfilter.kafkautil import ensure_topics
from alertfilter.lean import CUTOUT_FIELDS, H_LEAN_OFFSET, H_LEAN_PARTITION, H_LEAN_TOPIC, H_LEAN_UNSPLICED
from tests.integration.streams import Record, RunnerProcess, encode_files, read_topic

PARTITIONS = 2
PRODUCED_AT_MS = int(time.time() * 1000) - 3_600_000
COPIES = 3

# a diaSource cut: reads no cutout, so it would be routed to the lean topic
BRIGHT = """
def bright(alert):
    return alert["diaSource"]["psfFlux"] > 1700
"""
# declared fields, an error on a third of the alerts (dead letters), accepts the rest (capped)
PICKY = """
from alertfilter import AlertFilter

class Picky(AlertFilter):
    fields = ["diaSourceId", "diaSource"]

    def filter(self, alert):
        if alert["diaSourceId"] % 3 == 0:
            raise ValueError("a third of the alerts")
        return True
"""


def lean_process(bootstrap: str, full: str, lean: str, schema_dir: Path, log: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "alertfilter",
        "lean",
        "--bootstrap-servers",
        bootstrap,
        "--input",
        full,
        "--lean-topic",
        lean,
        "--schema-dir",
        str(schema_dir),
        "--metrics-port",
        "-1",
        "--exit-when-idle",
        "3",
        *extra,
    ]


@pytest.fixture(scope="module")
def streams(kafka, alerts_dir, tmp_path_factory):
    """The full stream (real alerts, two partitions, keyed by visit, with headers; one message no
    schema knows) and its lean stream made by ``alertfilter lean``."""
    tmp = tmp_path_factory.mktemp("lean")
    schema_dir = tmp / "schemas"
    records, values = encode_files(
        [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"], schema_dir
    )
    full, lean = "lean-test.alerts", "lean-test.alerts.lean"
    ensure_topics(kafka.bootstrap, {full: PARTITIONS, lean: PARTITIONS})
    p = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 16 * 1024 * 1024, "linger.ms": 5})
    for copy in range(COPIES):
        for rec, v in zip(records, values, strict=True):
            visit = rec["diaSource"]["visit"]
            p.produce(
                full,
                v,
                key=str(visit).encode(),
                headers=[("trace", f"{copy}".encode())],
                partition=visit % PARTITIONS,
                timestamp=PRODUCED_AT_MS + copy * 1000,  # an hour ago: not the lean copy's own time
            )
    p.produce(full, b"not an alert", key=b"junk", partition=0)
    assert p.flush(30) == 0
    log = tmp / "lean.log"
    with open(log, "wb") as out:
        rc = subprocess.run(
            lean_process(kafka.bootstrap, full, lean, schema_dir, log),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=180,
        ).returncode
    assert rc == 0, log.read_text()[-4000:]
    return {"full": full, "lean": lean, "schema_dir": schema_dir, "tmp": tmp, "log": log, "records": records}


def test_the_lean_stream_is_the_full_stream_with_null_cutouts_same_partition_key_and_headers(kafka, streams):
    full = read_topic(kafka.bootstrap, streams["full"])
    lean = read_topic(kafka.bootstrap, streams["lean"])
    assert len(lean) == len(full) == COPIES * 24 + 1
    schema = fastavro.parse_schema(__import__("json").loads((streams["schema_dir"] / "1000.avsc").read_text()))
    for f, le in zip(full, lean, strict=True):
        assert (le.partition, le.offset, le.key) == (f.partition, f.offset, f.key)
        assert le.timestamp == f.timestamp  # startFrom/replayFrom times mean the same on both streams
        assert le.headers[H_LEAN_TOPIC] == streams["full"].encode()
        assert (int(le.headers[H_LEAN_PARTITION]), int(le.headers[H_LEAN_OFFSET])) == (f.partition, f.offset)
        assert {k: v for k, v in le.headers.items() if not k.startswith("alertfilter.lean.")} == f.headers
        if f.value == b"not an alert":  # never lost: forwarded whole, with the reason
            assert le.value == f.value and le.headers[H_LEAN_UNSPLICED] == b"not-confluent"
            continue
        assert f.value is not None and le.value is not None
        assert le.value[:5] == f.value[:5]  # the same schema id
        got = fastavro.schemaless_reader(io.BytesIO(le.value[5:]), schema)
        want = fastavro.schemaless_reader(io.BytesIO(f.value[5:]), schema)
        assert repr(got) == repr({**want, **dict.fromkeys(CUTOUT_FIELDS)})  # type: ignore[dict-item]
    full_bytes = sum(len(r.value or b"") for r in full)
    lean_bytes = sum(len(r.value or b"") for r in lean)
    assert lean_bytes * 3 < full_bytes, (lean_bytes, full_bytes)


def _outputs(kafka, topic: str) -> list[Record]:
    """The records of ``topic`` in a canonical order (by the original's partition and offset as the
    dead letters name it, else by value): the two paths read their partitions interleaved differently."""
    return read_topic(kafka.bootstrap, topic)


def _dead_letters(kafka, topic: str) -> list[tuple[bytes, bytes, bytes, bytes]]:
    rows = []
    for r in read_topic(kafka.bootstrap, topic):
        h = r.headers
        rows.append(
            (
                h["alertfilter.error.reason"],
                h["alertfilter.source.topic"],
                h["alertfilter.source.partition"],
                h["alertfilter.source.offset"],
            )
        )
    return sorted(rows)


def _run(kafka, streams, name: str, source: str, lean: bool, *extra: str) -> str:
    tmp: Path = streams["tmp"]
    path = tmp / f"{name}.py"
    path.write_text(source)
    out = f"lean-test.{name}.{'lean' if lean else 'full'}"
    args = ["--full-topic", streams["full"]] if lean else []
    r = RunnerProcess(
        kafka.bootstrap,
        streams["lean" if lean else "full"],
        out,
        path,
        streams["schema_dir"],
        tmp / f"{out}.log",
        *args,
        *extra,
    )
    assert r.run_to_idle() == 0, r.log()
    return out


@pytest.mark.parametrize(
    ("name", "source", "extra"),
    [
        ("bright", BRIGHT, ("--no-visit-cap",)),
        ("picky", PICKY, ("--max-alerts-per-visit", "2")),
        ("picky-eos", PICKY, ("--max-alerts-per-visit", "2", "--exactly-once")),
    ],
)
def test_the_same_filter_gives_the_same_outputs_on_the_full_and_the_lean_path(kafka, streams, name, source, extra):
    full_out = _run(kafka, streams, name, source, False, *extra)
    lean_out = _run(kafka, streams, name, source, True, *extra)

    def canon(records: list[Record]) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
        return sorted((r.value, r.key, sorted(r.headers.items())) for r in records)

    full, lean = canon(_outputs(kafka, full_out)), canon(_outputs(kafka, lean_out))
    assert full, "the filter accepted nothing: the comparison would prove nothing"
    assert len(lean) == len(full)
    for a, b in zip(full, lean, strict=True):  # byte for byte: value, key and headers
        assert a == b
    assert all(v is not None and len(v) > 30_000 for v, _, _ in lean)  # the originals, cutouts and all
    # dead letters: the same reasons, naming the same original (the lean one holds the lean alert)
    assert _dead_letters(kafka, f"{full_out}.deadletter") == _dead_letters(kafka, f"{lean_out}.deadletter")


def test_an_accepted_lean_alert_whose_original_is_gone_is_a_dead_letter_with_the_reason(kafka, streams):
    # a lean copy of the stream whose full stream loses its first records (as retention would)
    full, lean = "lean-test.gone", "lean-test.gone.lean"
    ensure_topics(kafka.bootstrap, {full: 1, lean: 1})
    src = [r for r in read_topic(kafka.bootstrap, streams["full"]) if r.value != b"not an alert"]
    p = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 16 * 1024 * 1024})
    for rec in src[:30]:
        p.produce(full, rec.value, key=rec.key, partition=0)
    assert p.flush(30) == 0
    with open(streams["tmp"] / "gone-lean.log", "wb") as log:
        args = lean_process(kafka.bootstrap, full, lean, streams["schema_dir"], streams["tmp"] / "x")
        assert subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, timeout=180).returncode == 0
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for fut in admin.delete_records([TopicPartition(full, 0, 10)]).values():
        fut.result(timeout=30)
    tmp: Path = streams["tmp"]
    (tmp / "all.py").write_text("def everything(alert):\n    return alert['diaSourceId'] > 0\n")
    runner = RunnerProcess(
        kafka.bootstrap,
        lean,
        "lean-test.gone.out",
        tmp / "all.py",
        streams["schema_dir"],
        tmp / "gone.log",
        "--full-topic",
        full,
        "--no-visit-cap",
    )
    assert runner.run_to_idle() == 0, runner.log()
    out = read_topic(kafka.bootstrap, "lean-test.gone.out")
    dls = read_topic(kafka.bootstrap, "lean-test.gone.out.deadletter")
    assert [o.value for o in out] == [rec.value for rec in src[10:30]]  # the originals still there, in order
    assert len(dls) == 10
    for k, d in enumerate(dls):
        assert d.headers["alertfilter.error.reason"] == b"original-missing"
        assert b"is gone from the full stream" in d.headers["alertfilter.error.message"]
        assert (d.headers["alertfilter.source.topic"], d.headers["alertfilter.source.offset"]) == (
            full.encode(),
            str(k).encode(),
        )


def test_a_lean_producer_killed_midway_loses_no_alert(kafka, streams):
    """At-least-once: SIGKILL while copying, start again: every alert of the full stream has a lean
    copy (some twice: those acknowledged but not yet committed)."""
    import signal
    import time

    full, lean = "lean-test.kill", "lean-test.kill.lean"
    ensure_topics(kafka.bootstrap, {full: 2, lean: 2})
    src = [r for r in read_topic(kafka.bootstrap, streams["full"]) if r.value != b"not an alert"]
    p = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 16 * 1024 * 1024, "linger.ms": 5})
    for k in range(600):
        p.produce(full, src[k % len(src)].value, partition=k % 2)
        p.poll(0)
    assert p.flush(30) == 0
    log = streams["tmp"] / "kill-lean.log"
    args = lean_process(kafka.bootstrap, full, lean, streams["schema_dir"], log, "--batch-size", "20")
    args = args[: args.index("--exit-when-idle")]  # runs until killed
    from confluent_kafka import Consumer

    ends = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "lean-test-ends"})

    def lean_copies() -> int:
        return sum(ends.get_watermark_offsets(TopicPartition(lean, q), timeout=5)[1] for q in (0, 1))

    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while lean_copies() < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    ends.close()
    copied = len(read_topic(kafka.bootstrap, lean))
    assert 0 < copied < 600, "killed too late or too early to prove anything"
    with open(log, "ab") as out:
        assert subprocess.run(lean_process(kafka.bootstrap, full, lean, streams["schema_dir"], log), stdout=out,
                              stderr=subprocess.STDOUT, timeout=180).returncode == 0  # fmt: skip
    copies = read_topic(kafka.bootstrap, lean)
    sources = {(int(r.headers[H_LEAN_PARTITION]), int(r.headers[H_LEAN_OFFSET])) for r in copies}
    assert sources == {(k % 2, k // 2) for k in range(600)}  # every alert, each in its own partition
    assert all(r.partition == int(r.headers[H_LEAN_PARTITION]) for r in copies)
    assert len(copies) >= 600


def test_a_runner_on_the_lean_path_killed_midway_forwards_every_original_after_its_restart(kafka, streams):
    """SIGKILL of a runner reading the lean topic while it forwards originals, then a restart (as the
    kubelet restarts a killed container): its output is the full path's, alert for alert (as a set:
    at-least-once may repeat a batch read again), the cap holding."""
    import signal

    slow = "import time\n" + BRIGHT.replace("def bright(alert):\n", "def bright(alert):\n    time.sleep(0.2)\n")
    full_out = _run(kafka, streams, "killed-ref", BRIGHT, False, "--max-alerts-per-visit", "2")
    tmp: Path = streams["tmp"]
    (tmp / "killed.py").write_text(slow)
    out = "lean-test.killed.lean"
    r = RunnerProcess(kafka.bootstrap, streams["lean"], out, tmp / "killed.py", streams["schema_dir"],
                      tmp / "killed.log", "--full-topic", streams["full"], "--max-alerts-per-visit", "2",
                      "--batch-size", "4")  # fmt: skip
    from confluent_kafka import Consumer

    ends = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "lean-test-killed-ends"})
    r.start()
    deadline = time.monotonic() + 120
    while ends.get_watermark_offsets(TopicPartition(out, 0), timeout=5)[1] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    r.kill(signal.SIGKILL)
    ends.close()
    r.wait(30)
    forwarded_before = len(read_topic(kafka.bootstrap, out))
    assert r.run_to_idle() == 0, r.log()
    full, lean = _outputs(kafka, full_out), _outputs(kafka, out)
    assert 2 <= forwarded_before < len(full), "killed too late or too early to prove anything"
    assert {(x.value, x.key) for x in lean} == {(x.value, x.key) for x in full}
