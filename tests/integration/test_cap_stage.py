"""The per-visit cap with several replicas (``--cap-stage``), on a real Kafka broker with real runner
processes: three replicas, visits interleaved across three input partitions, one replica SIGKILLed
mid-stream and restarted (as the kubelet restarts a killed container), and exactly N alerts per
visit on the output topic; the same output as the in-process cap with one replica; going from one
replica to three and back keeps the cap of the visits in flight."""

from __future__ import annotations

import json
import random
import re
import signal
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import fastavro
import pytest

from alertfilter.candidates import CANDIDATES_PARTITIONS, parse_candidate
from alertfilter.codecs import Decoder, encode_confluent
from alertfilter.kafkautil import ensure_topics
from alertfilter.schemas import DirectorySchemaSource

from .streams import Record, RunnerProcess, read_topic

CAP = 7
#: Accepts ~40 % of the simulated alerts, slowly: three replicas are worth having.
SLOW_FILTER = "import time\ndef f(alert):\n    time.sleep({sleep})\n    return alert['diaSource']['snr'] > 12\n"
SIM_ARGS = ("--id-field", "alertId")


#: A small alert schema whose visits hold many alerts (the simulator's ccdVisitId holds one or two).
SCHEMA = {
    "type": "record",
    "name": "Alert",
    "fields": [
        {"name": "alertId", "type": "long"},
        {
            "name": "diaSource",
            "type": {
                "type": "record",
                "name": "DiaSource",
                "fields": [{"name": "visit", "type": "long"}, {"name": "snr", "type": "double"}],
            },
        },
        {"name": "cutout", "type": "bytes"},
    ],
}


def _stream(tmp_path: Path, n_visits: int, per_visit: int, seed: int = 3) -> tuple[list[dict[str, Any]], list[bytes]]:
    """``n_visits`` x ``per_visit`` alerts, visits interleaved; ~40 % have snr > 12."""
    (tmp_path / "schemas").mkdir(exist_ok=True)
    (tmp_path / "schemas" / "1.avsc").write_text(json.dumps(SCHEMA))
    parsed = fastavro.parse_schema(SCHEMA)
    rng = random.Random(seed)
    alerts = [
        {"alertId": v * 10_000 + i, "diaSource": {"visit": v, "snr": rng.uniform(0, 20)}, "cutout": rng.randbytes(100)}
        for v in range(500, 500 + n_visits)
        for i in range(per_visit)
    ]
    rng.shuffle(alerts)  # visits interleave
    return alerts, [encode_confluent(a, parsed, 1) for a in alerts]


def _produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = 3) -> None:
    """Each value with a key and headers of its own (the output must carry them unchanged)."""
    from confluent_kafka import Producer

    ensure_topics(bootstrap, {topic: partitions})
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        headers: list[tuple[str, str | bytes | None]] = [("origin", f"o{i}".encode()), ("alertfilter.visit", b"forged")]
        p.produce(topic, v, key=f"k{i}".encode() if i % 5 else None, headers=headers, partition=i % partitions)
        p.poll(0)
    assert p.flush(30) == 0


def _replicas(
    kafka: Any, tmp_path: Path, inp: str, out: str, flt: Path, n: int, *extra: str, exactly_once: bool = False
) -> list[RunnerProcess]:
    cand = f"{out}.candidates"
    ensure_topics(kafka.bootstrap, {cand: CANDIDATES_PARTITIONS})
    eos = ("--exactly-once", "-X", "transaction.timeout.ms=15000") if exactly_once else ()
    return [
        RunnerProcess(
            kafka.bootstrap,
            inp,
            out,
            flt,
            tmp_path / "schemas",
            tmp_path / f"run{i}.log",
            "--max-alerts-per-visit",
            str(CAP),
            "--candidates-topic",
            cand,
            *SIM_ARGS,
            *eos,
            *(("--transactional-id", f"tx-{out}-{i}") if exactly_once else ()),
            *extra,
        )
        for i in range(n)
    ]


def _ids(tmp_path: Path, recs: list[Record]) -> list[tuple[int, int]]:
    """(visit, alert id) of each record."""
    dec = Decoder("confluent", DirectorySchemaSource(tmp_path / "schemas"))
    out = []
    for r in recs:
        a = dec.decode(r.value)
        out.append((a["diaSource"]["visit"], a["alertId"]))
    return out


def _first_n_of_candidates(bootstrap: str, topic: str) -> dict[Any, list[tuple[str, int, int]]]:
    """The first CAP distinct sources of each visit, in the candidates topic's order."""
    firsts: dict[Any, list[tuple[str, int, int]]] = defaultdict(list)
    for rec in read_topic(bootstrap, topic):
        c = parse_candidate(_AsMessage(rec, topic))
        if c.source not in firsts[c.visit] and len(firsts[c.visit]) < CAP:
            firsts[c.visit].append(c.source)
    return firsts


class _AsMessage:
    def __init__(self, rec: Record, topic: str) -> None:
        self.rec, self.t = rec, topic

    def key(self) -> bytes | None:
        return self.rec.key

    def value(self) -> bytes | None:
        return self.rec.value

    def headers(self) -> list[tuple[str, bytes]]:
        return list(self.rec.headers.items())

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.rec.partition

    def offset(self) -> int:
        return self.rec.offset


def _check_exact(kafka: Any, tmp_path: Path, alerts: list[dict[str, Any]], out: str, exactly_once: bool) -> None:
    accepted: dict[int, set[int]] = defaultdict(set)
    for a in alerts:
        if a["diaSource"]["snr"] > 12:
            accepted[a["diaSource"]["visit"]].add(a["alertId"])
    got = read_topic(kafka.bootstrap, out, read_committed=True)
    per_visit: dict[int, list[int]] = defaultdict(list)
    for visit, alert_id in _ids(tmp_path, got):
        per_visit[visit].append(alert_id)
    assert set(per_visit) == set(accepted)
    for visit, ids in per_visit.items():
        assert len(set(ids)) == min(CAP, len(accepted[visit])), (visit, ids)  # exactly N distinct alerts per visit
        assert set(ids) <= accepted[visit]
        if exactly_once:
            assert len(ids) == len(set(ids)), f"visit {visit}: an alert was written twice: {ids}"
    # "the first N of a visit" = the first N distinct sources in the candidates topic's order
    firsts = _first_n_of_candidates(kafka.bootstrap, f"{out}.candidates")
    dec = Decoder("confluent", DirectorySchemaSource(tmp_path / "schemas"))
    by_source = {}
    for rec in read_topic(kafka.bootstrap, f"{out}.candidates"):
        c = parse_candidate(_AsMessage(rec, ""))
        by_source[c.source] = dec.decode(rec.value)["alertId"]
    assert {v: {by_source[s] for s in srcs} for v, srcs in firsts.items()} == {
        v: set(ids) for v, ids in per_visit.items()
    }
    assert sum(len(ids) for ids in per_visit.values()) > 3 * CAP


def _consumed(port: int) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    found = re.search(r"^alertfilter_alerts_consumed_total (\S+)$", body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _run_killing_one(replicas: list[RunnerProcess], kill_at: int) -> None:
    """Run the replicas to idle; SIGKILL the first to have consumed ``kill_at`` alerts (mid-batch)."""
    from alertfilter_devstack.procs import free_port

    ports = [free_port() for _ in replicas]
    for r, port in zip(replicas, ports, strict=True):
        r.args[r.args.index("--metrics-port") + 1] = str(port)
        r.args += ["--exit-when-idle", "4"]
        r.start()
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = next((r for r, port in zip(replicas, ports, strict=True) if _consumed(port) >= kill_at), None)
        time.sleep(0.05)
    assert victim is not None, "no replica consumed enough to be killed mid-batch"
    victim.kill(signal.SIGKILL)
    victim.wait(30)
    victim.start()  # the kubelet restarts a killed container (same pod: same host name)
    for r in replicas:
        assert r.wait(240) == 0, r.log()


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_three_replicas_and_a_sigkill_give_exactly_n_per_visit(kafka, tmp_path, topic_prefix, exactly_once):
    alerts, values = _stream(tmp_path, 12, 300)
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    _produce(kafka.bootstrap, inp, values)
    flt = tmp_path / "f.py"
    flt.write_text(SLOW_FILTER.format(sleep=0.004))
    # a batch of 1,000 takes ~4 s: its candidates are sent long before its input offsets are committed
    args = ("--cap-stage", "--batch-size", "1000", "--filter-timeout", "0.2")
    replicas = _replicas(kafka, tmp_path, inp, out, flt, 3, *args, exactly_once=exactly_once)
    _run_killing_one(replicas, 300)  # mid-batch: candidates sent, their input not committed
    assert "cap stage assigned" in replicas[0].log() + replicas[1].log() + replicas[2].log()
    _check_exact(kafka, tmp_path, alerts, out, exactly_once)
    candidates = read_topic(kafka.bootstrap, f"{out}.candidates", read_committed=False)
    sources = [parse_candidate(_AsMessage(rec, "")).source for rec in candidates]
    # the killed replica sent again what it had sent and not committed (with exactly-once, in a
    # transaction that was aborted): the stage counted it once
    assert len(sources) > len(set(sources)), "the SIGKILL came too late to test copies"
    # the records are the input's, byte for byte, with their key and headers (alertfilter.* ones replaced)
    inputs = {v: i for i, v in enumerate(values)}
    for rec in read_topic(kafka.bootstrap, out, read_committed=True):
        i = inputs[rec.value or b""]
        assert rec.key == (f"k{i}".encode() if i % 5 else None)
        assert rec.headers["origin"] == f"o{i}".encode()
        assert rec.headers["alertfilter.visit"] == str(alerts[i]["diaSource"]["visit"]).encode()
        assert not any(k.startswith("alertfilter.candidate") for k in rec.headers)


def _forwarded(kafka: Any, out: str) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    return [(r.value, r.key, r.headers) for r in read_topic(kafka.bootstrap, out, read_committed=True)]


def test_one_replica_through_the_cap_stage_writes_what_the_in_process_cap_writes(kafka, tmp_path, topic_prefix):
    _alerts, values = _stream(tmp_path, 6, 60)
    inp = f"{topic_prefix}-alerts"
    _produce(kafka.bootstrap, inp, values, partitions=1)  # one partition: one order of processing
    flt = tmp_path / "f.py"
    flt.write_text(SLOW_FILTER.format(sleep=0))
    outs = {}
    for mode, extra in (("inproc", ()), ("stage", ("--cap-stage",))):
        out = f"{topic_prefix}-{mode}"
        (r,) = _replicas(kafka, tmp_path, inp, out, flt, 1, *extra)
        assert r.run_to_idle() == 0, r.log()
        outs[mode] = _forwarded(kafka, out)
    # the same records (the stage writes the visits of its three partitions in turn: another interleaving)
    assert sorted(outs["stage"], key=repr) == sorted(outs["inproc"], key=repr) and len(outs["inproc"]) == 6 * CAP


def test_one_replica_to_three_and_back_keeps_the_cap_of_the_visits_in_flight(kafka, tmp_path, topic_prefix):
    alerts, values = _stream(tmp_path, 9, 30)
    rng = random.Random(4)  # each visit spans about three visits' time: the changes come mid-visit
    order = sorted(range(len(alerts)), key=lambda i: alerts[i]["diaSource"]["visit"] + rng.uniform(0, 3))
    alerts, values = [alerts[i] for i in order], [values[i] for i in order]
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    flt = tmp_path / "f.py"
    flt.write_text(SLOW_FILTER.format(sleep=0))
    thirds = [slice(0, 90), slice(90, 180), slice(180, 270)]
    # one replica, the cap in its process
    _produce(kafka.bootstrap, inp, values[thirds[0]])
    (one,) = _replicas(kafka, tmp_path, inp, out, flt, 1)
    assert one.run_to_idle() == 0, one.log()
    # three replicas with a cap stage, which starts from the counts the lone runner committed
    _produce(kafka.bootstrap, inp, values[thirds[1]])
    three = _replicas(kafka, tmp_path, inp, out, flt, 3, "--cap-stage")
    for r in three:
        r.args += ["--exit-when-idle", "3"]
        r.start()
    for r in three:
        assert r.wait(240) == 0, r.log()
    # candidates the stages left unforwarded (they were stopped first), then one replica again:
    # it forwards them up to the cap, and caps the rest in its process from their counts
    from confluent_kafka import Producer

    from alertfilter.candidates import candidate_headers, visit_key

    from .streams import Record

    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    left = values[thirds[2]][:30]
    for i, v in enumerate(left):
        rec = _AsMessage(Record(v, None, {}, 9, i), inp)
        visit = alerts[180 + i]["diaSource"]["visit"]
        headers: list[tuple[str, str | bytes | None]] = list(candidate_headers(rec, None))
        producer.produce(f"{out}.candidates", v, key=visit_key(visit), headers=headers)
    assert producer.flush(30) == 0
    _produce(kafka.bootstrap, inp, values[thirds[2]][30:])
    (again,) = _replicas(kafka, tmp_path, inp, out, flt, 1)
    assert again.run_to_idle() == 0, again.log()
    accepted: dict[int, set[int]] = defaultdict(set)
    for a in alerts:
        if a["diaSource"]["snr"] > 12:
            accepted[a["diaSource"]["visit"]].add(a["alertId"])
    per_visit: dict[int, list[int]] = defaultdict(list)
    for visit, alert_id in _ids(tmp_path, read_topic(kafka.bootstrap, out)):
        per_visit[visit].append(alert_id)
    assert {v: len(set(ids)) for v, ids in per_visit.items()} == {v: min(CAP, len(a)) for v, a in accepted.items()}
    assert all(len(ids) == len(set(ids)) for ids in per_visit.values())
    left_ids = {alerts[180 + i]["alertId"] for i in range(30)} & set().union(*accepted.values())
    assert left_ids & {i for ids in per_visit.values() for i in ids}, "no leftover candidate was forwarded"


def test_a_replay_with_three_replicas_forwards_the_visits_again_capped_afresh(kafka, tmp_path, topic_prefix):
    alerts, values = _stream(tmp_path, 6, 60)
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    _produce(kafka.bootstrap, inp, values)
    flt = tmp_path / "f.py"
    flt.write_text(SLOW_FILTER.format(sleep=0))
    accepted: dict[int, set[int]] = defaultdict(set)
    for a in alerts:
        if a["diaSource"]["snr"] > 12:
            accepted[a["diaSource"]["visit"]].add(a["alertId"])
    expected = {v: min(CAP, len(a)) for v, a in accepted.items()}
    runs: list[list[tuple[int, int]]] = []
    for replay in ((), ("--replay-from", "2000-01-01T00:00:00Z", "--replay-id", "1")):
        replicas = _replicas(kafka, tmp_path, inp, out, flt, 3, "--cap-stage", *replay)
        for r in replicas:
            r.args += ["--exit-when-idle", "3"]
            r.start()
        for r in replicas:
            assert r.wait(240) == 0, r.log()
        got = _ids(tmp_path, read_topic(kafka.bootstrap, out))
        runs.append(got[sum(len(run) for run in runs) :])  # one output partition: the replay's come after
    for run in runs:  # N distinct alerts of each visit before the replay, and N again after it
        per_visit: dict[int, set[int]] = defaultdict(set)
        for visit, alert_id in run:
            per_visit[visit].add(alert_id)
        assert {v: len(ids) for v, ids in per_visit.items()} == expected
