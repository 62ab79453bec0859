"""Start positions and replays of the runner on a real broker, with alerts produced at explicit
timestamps (minutes apart): each ``--start-from``, applied only on the group's first run; ``--replay-from`` with
``--replay-id`` rewinds once per request (restarts replay nothing again), the cap counted afresh."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Producer

from alertfilter.kafkautil import ensure_topics
from alertfilter.positions import read_mark

from .streams import RunnerProcess, committed, encode_files, read_topic

#: Two hours ago on a whole minute, ms: recent, since older records go with the topic's retention.
T0 = (int(time.time()) // 60 - 120) * 60_000
MINUTE = 60_000


def iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def produce_at(bootstrap: str, topic: str, values: list[bytes], first_ms: int, partitions: int = 1) -> None:
    """``values`` with timestamps ``first_ms``, ``first_ms`` + 1 min, ... (round robin over the partitions)."""
    ensure_topics(bootstrap, {topic: partitions})
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16 * 1024 * 1024})
    for i, v in enumerate(values):
        p.produce(topic, v, partition=i % partitions, timestamp=first_ms + i * MINUTE)
    assert p.flush(30) == 0


def one_visit(path: Path, schema_dir: Path) -> list[bytes]:
    """The alerts of ``path`` as Confluent-framed values, all of one visit."""
    import fastavro

    from alertfilter.codecs import encode_confluent, read_container
    from alertfilter.schemas import rubin_schema_id

    encode_files([path], schema_dir)  # writes the schema
    schema, records = read_container(str(path))
    sid = rubin_schema_id(schema["name"])
    assert sid is not None
    parsed = fastavro.parse_schema(schema)
    return [encode_confluent({**r, "diaSource": {**r["diaSource"], "visit": 7}}, parsed, sid) for r in records]


def runner(kafka, tmp_path: Path, inp: str, out: str, *args: str, group: str | None = None) -> RunnerProcess:
    flt = tmp_path / "all.py"
    flt.write_text("def everything(alert):\n    return True\n")
    return RunnerProcess(
        kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", *args, group=group or f"g-{out}"
    )


def run(r: RunnerProcess) -> None:
    assert r.run_to_idle() == 0, r.log()


def ids(kafka, topic: str, values: list[bytes]) -> list[int]:
    """Index in ``values`` of each record of ``topic``, in order."""
    return [values.index(rec.value or b"") for rec in read_topic(kafka.bootstrap, topic)]


def test_each_start_position_on_the_groups_first_run(kafka, alerts_dir, tmp_path, topic_prefix):
    _, values = encode_files([alerts_dir / "rubin-v10_0-real-20.avro"], tmp_path / "schemas")
    values = values[:12]
    inp = f"{topic_prefix}-alerts"
    produce_at(kafka.bootstrap, inp, values[:8], T0)  # 00:00 ... 00:07

    # earliest: everything the input holds
    run(runner(kafka, tmp_path, inp, f"{topic_prefix}-earliest", "--no-visit-cap", "--start-from", "earliest"))
    assert ids(kafka, f"{topic_prefix}-earliest", values) == list(range(8))

    # a time: the first alert at or after it (00:05 -> the sixth)
    run(runner(kafka, tmp_path, inp, f"{topic_prefix}-time", "--no-visit-cap", "--start-from", iso(T0 + 5 * MINUTE)))
    assert ids(kafka, f"{topic_prefix}-time", values) == [5, 6, 7]

    # latest, and a time past the end: nothing of what is there; later alerts only
    latest = runner(kafka, tmp_path, inp, f"{topic_prefix}-latest", "--no-visit-cap", "--start-from", "latest")
    future = runner(kafka, tmp_path, inp, f"{topic_prefix}-future", "--no-visit-cap", "--start-from", iso(T0 + 10**9))
    run(latest)
    run(future)
    assert ids(kafka, f"{topic_prefix}-latest", values) == [] == ids(kafka, f"{topic_prefix}-future", values)
    assert committed(kafka.bootstrap, inp, f"g-{topic_prefix}-latest") == [(8, None)]  # the start is fixed at once
    produce_at(kafka.bootstrap, inp, values[8:12], T0 + 8 * MINUTE)

    # a second run resumes from the committed offsets, whatever --start-from says
    for name, first in (("latest", 8), ("future", 8), ("time", 5), ("earliest", 0)):
        run(runner(kafka, tmp_path, inp, f"{topic_prefix}-{name}", "--no-visit-cap", "--start-from", "earliest"))
        assert ids(kafka, f"{topic_prefix}-{name}", values) == list(range(first, 12)), name


def test_a_replay_rewinds_once_per_request_and_caps_afresh(kafka, alerts_dir, tmp_path, topic_prefix):
    values = one_visit(alerts_dir / "rubin-v10_0-real-20.avro", tmp_path / "schemas")  # a cap of 3 bites every run
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_at(kafka.bootstrap, inp, values[:10], T0, partitions=2)  # 00:00 ... 00:09, 5 per partition
    cap = ("--max-alerts-per-visit", "3", "--start-from", "earliest")

    run(runner(kafka, tmp_path, inp, out, *cap))
    first = ids(kafka, out, values)
    assert len(first) == 3

    replay = ("--replay-from", iso(T0 + 4 * MINUTE), "--replay-id", "1")  # 00:04 ...: 3 per partition
    run(runner(kafka, tmp_path, inp, out, *cap, *replay))
    again = ids(kafka, out, values)[3:]
    assert len(again) == 3 and all(i >= 4 for i in again)  # the cap counted afresh, the output kept
    marks = [read_mark(meta) for _, meta in committed(kafka.bootstrap, inp, f"g-{out}")]
    assert [(m.request, m.offset) for m in marks if m] == [(1, 2), (1, 2)]

    # the same request after a restart: nothing replayed; new alerts go on as usual, the mark kept
    produce_at(kafka.bootstrap, inp, values[10:14], T0 + 10 * MINUTE, partitions=2)
    run(runner(kafka, tmp_path, inp, out, "--no-visit-cap", *replay))
    assert sorted(ids(kafka, out, values)[6:]) == [10, 11, 12, 13]
    assert [read_mark(meta) for _, meta in committed(kafka.bootstrap, inp, f"g-{out}")] == marks
    run(runner(kafka, tmp_path, inp, out, "--no-visit-cap", *replay))
    assert len(ids(kafka, out, values)) == 10

    # a new request replays again
    run(runner(kafka, tmp_path, inp, out, "--no-visit-cap", "--replay-from", iso(T0 + 12 * MINUTE), "--replay-id", "2"))
    assert len(ids(kafka, out, values)) == 12 and sorted(ids(kafka, out, values))[-4:] == [12, 12, 13, 13]

    # a runner of an earlier request (a rollout's old pod) keeps the later mark and replays nothing
    run(runner(kafka, tmp_path, inp, out, "--no-visit-cap", "--replay-from", iso(T0), "--replay-id", "1"))
    assert len(ids(kafka, out, values)) == 12
    assert {m.request for _, meta in committed(kafka.bootstrap, inp, f"g-{out}") if (m := read_mark(meta))} == {2}


def test_a_replay_with_exactly_once_commits_its_mark_in_the_transactions(kafka, alerts_dir, tmp_path, topic_prefix):
    _, values = encode_files([alerts_dir / "rubin-v10_0-real-20.avro"], tmp_path / "schemas")
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_at(kafka.bootstrap, inp, values[:6], T0)
    eos = ("--no-visit-cap", "--exactly-once", "--start-from", "earliest")
    run(runner(kafka, tmp_path, inp, out, *eos))
    replay = ("--replay-from", iso(T0 + 3 * MINUTE), "--replay-id", "5")
    run(runner(kafka, tmp_path, inp, out, *eos, *replay))
    assert ids(kafka, out, values) == [0, 1, 2, 3, 4, 5, 3, 4, 5]
    ((offset, meta),) = committed(kafka.bootstrap, inp, f"g-{out}")
    assert offset == 6 and read_mark(meta) is not None and read_mark(meta).request == 5  # type: ignore[union-attr]
    run(runner(kafka, tmp_path, inp, out, *eos, *replay))  # restarted: nothing again
    assert len(ids(kafka, out, values)) == 9
