"""What the density benchmark (``bench/density.py``) feeds and reads: the shared real alerts with
fresh ids at the visit schedule's times, the filters it runs, and the accepted alerts' arrival times."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import density_model as dm
import density_stack as ds
import fastavro
import throughput as tp
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from alertfilter.codecs import encode_confluent, read_container
from alertfilter.schemas import rubin_schema_id

#: Alert ids are ID_BASE + the feed's sequence number (a multiple of the acceptance modulus, so
#: a filter's residue holds for both).
ID_BASE = 10**15
FIRST_VISIT = 2026120300000
DEFAULT_MIX = "diasource,lightcurve,cutout,diasource,diasource,lightcurve,diasource,diasource,lightcurve,diasource"
FILTERS = {
    "diasource": (
        "def diasource_cut(alert):\n"
        "    src = alert['diaSource']\n"
        "    snr = abs(src['psfFlux'] or 0.0) / (src['psfFluxErr'] or 1.0)\n"
        "    # the verdict: a known 1 % of the alerts (by id), so every visit has accepted alerts to time;\n"
        "    # the cut is computed as a real one is (and NaN-safe)\n"
        "    return src['diaSourceId'] % {m} == {r} and (snr >= 5.0 or not snr >= 5.0)\n"
    ),
    "lightcurve": (
        "def light_curve(alert):\n"
        "    hist = alert['prvDiaSources'] or []\n"
        "    flux = [p['psfFlux'] for p in hist if p['band'] == 'g']\n"
        "    mjd = [p['midpointMjdTai'] for p in hist if p['band'] == 'g']\n"
        "    rising = len(flux) >= 3 and flux[-1] > flux[0] and mjd[-1] - mjd[0] < 30\n"
        "    # the verdict: a known 1 % of the alerts (by id); the light curve is the work a real one does\n"
        "    return alert['diaSource']['diaSourceId'] % {m} == {r} and (rising or not rising)\n"
    ),
    "cutout": (
        "def cutout_stamp(alert):\n"
        "    stamp = alert['cutoutDifference'] or b''\n"
        "    level = max(stamp[-2880:]) if stamp else 0  # a real filter opens the FITS; this reads its last block\n"
        "    return alert['diaSource']['diaSourceId'] % {m} == {r} and level >= 0\n"
    ),
}
READS_CUTOUTS = {"cutout"}


def alert_values() -> tuple[dict[str, Any], int, list[bytes]]:
    """The shared real alerts, Confluent-framed: ``(schema, schema id, values)``, one history-4 alert
    after every five real-20 ones (24 distinct values).

    Raises:
        FileNotFoundError: the shared data is not at ``ALERTFILTER_DATA`` (default ``../shared/data``).
    """
    files = [tp.DATA / "alerts" / f"rubin-v10_0-{n}.avro" for n in ("real-20", "history-4")]
    (schema, real), (schema2, hist) = (read_container(str(f)) for f in files)
    if schema2 != schema:
        raise ValueError("the two files have different writer schemas")
    sid = rubin_schema_id(schema["name"])
    assert sid is not None
    parsed = fastavro.parse_schema(schema)
    order, r, h = [], iter(real), iter(hist)
    for j in range(len(real) + len(hist)):
        order.append(next(h) if j % 6 == 5 else next(r))
    return schema, sid, [encode_confluent(rec, parsed, sid) for rec in order]


class Feed(threading.Thread):
    """Produces the schedule's visits to the central broker, each at ``t0 + start_s``; records when
    each visit's last alert was acknowledged (``ends``, epoch s). A peak visit is skipped when
    ``skip_peak`` is set by then (the runners are already more than a visit behind)."""

    def __init__(
        self, bootstrap: str, topic: str, values: list[bytes], splicer: dm.Splicer, schedule: list[dm.Visit], t0: float
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.values, self.splicer = bootstrap, topic, values, splicer
        self.schedule, self.t0 = schedule, t0
        self.skip_peak = threading.Event()
        self.stop = threading.Event()  # the step ended early: produce nothing more
        self.starts: dict[int, float] = {}
        self.ends: dict[int, float] = {}
        self.skipped: list[int] = []
        self.error: str | None = None
        self.bytes = 0
        self.produced = 0  # alerts handed to the producer so far

    def run(self) -> None:
        failures: list[str] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        p = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 20,
                "acks": "all",
                "log_level": 3,
                "enable.idempotence": True,
                "message.max.bytes": 10 * 1024 * 1024,
                "on_delivery": on_delivery,
            }
        )
        k = len(self.values)
        try:
            for v in self.schedule:
                if self.stop.wait(max(0.0, self.t0 + v.start_s - time.time())):
                    return
                if v.peak and self.skip_peak.is_set():
                    self.skipped.append(v.index)
                    continue
                self.starts[v.index] = time.time()
                for seq in v.seqs:
                    value = self.splicer.copy(self.values[seq % k], ID_BASE + seq, v.visit_id)
                    if self.stop.is_set():
                        return
                    tp.produce_with_retry(p, self.topic, value)
                    self.bytes += len(value)
                    self.produced += 1
                    p.poll(0)
                if p.flush(600) > 0 or failures:
                    raise RuntimeError(f"visit {v.index} not fully delivered: {failures[:3]}")
                self.ends[v.index] = time.time()
        except Exception as exc:  # noqa: BLE001 - reported by the step
            self.error = f"{type(exc).__name__}: {exc}"


def read_output(bootstrap: str, topic: str) -> list[tuple[int, float]]:
    """``(sequence number, record timestamp in epoch s)`` of every record of an output topic."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"density-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 3,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    out: list[tuple[int, float]] = []
    try:
        if ds.end_offset(c, topic) == 0:
            return out
        c.assign([TopicPartition(topic, 0, -2)])  # -2: the beginning
        while True:
            msgs = c.consume(500, 5.0)
            if not msgs:
                break
            eof = False
            for m in msgs:
                err = m.error()
                if err is not None:
                    eof = eof or err.code() == KafkaError._PARTITION_EOF
                    continue
                out.append((dm.alert_id(m.value() or b"") - ID_BASE, m.timestamp()[1] / 1000))
            if eof:
                break
    finally:
        c.close()
    return out


def failed_step(mode: str, n: int, step: int, note: str) -> dict[str, Any]:
    """The figures of a step that could not run (its runners did not start, a broker refused)."""
    nan = float("nan")
    return {
        "mode": mode,
        "n": n,
        "step": step,
        "passed": False,
        "peak_ok": None,
        "visits": [],
        "runners": [],
        "cores_at_nominal": {},
        "cpu_step": {},
        "pool_sent_mb_s_at_nominal": nan,
        "pool_sent_gb": nan,
        "pool_received_gb": nan,
        "note": note,
    }


def collect(
    ctx: dict[str, Any],
    sampler: ds.Sampler,
    runners: list[ds.RunnerProc],
    sched: list[dm.Visit],
    feed: Feed,
    t0: float,
    t_stop: float,
    t_drained: float | None,
    lags: list[tuple[float, int]],
    total: int,
) -> dict[str, Any]:
    """Latencies per visit (all filters, and per kind) and the resources of the step."""
    notes: list[str] = []
    produced = [v for v in sched if v.index in feed.ends]
    lat: dict[tuple[int, str], list[float]] = {}
    expected: dict[tuple[int, str], int] = {}
    wrong = dup = 0
    for r in runners:
        seen: set[int] = set()
        for seq, ts in read_output(ctx["pool"], r.output):
            v = dm.visit_of(seq, sched)
            if v is None or v.index not in feed.ends or seq % dm.ACCEPT_MODULUS != r.residue:
                wrong += 1
                continue
            if seq in seen:
                dup += 1
                continue
            seen.add(seq)
            lat.setdefault((v.index, r.kind), []).append(ts - feed.ends[v.index])
        for v in produced:
            key = (v.index, r.kind)
            expected[key] = expected.get(key, 0) + len(dm.accepted_seqs(v, r.residue))
    if wrong:
        notes.append(f"{wrong} outputs outside the filters' samples")
    visits = []
    for v in produced:
        kinds = sorted({k for (i, k) in expected if i == v.index})
        all_lat = [x for k in kinds for x in lat.get((v.index, k), [])]
        s = dm.summarise(all_lat, sum(expected[(v.index, k)] for k in kinds))
        row = {
            "visit": v.index,
            "peak": v.peak,
            "alerts": v.size,
            **asdict(s),
            "ok": s.ok,
            "produce_s": round(feed.ends[v.index] - feed.starts[v.index], 1),
            "started_late_s": round(feed.starts[v.index] - (t0 + v.start_s), 1),
            "by_kind": {k: asdict(dm.summarise(lat.get((v.index, k), []), expected[(v.index, k)])) for k in kinds},
        }
        visits.append(row)
    nominal = [r for r in visits if not r["peak"]]
    n_nominal = len([v for v in sched if not v.peak])
    t_end = t_drained or t_stop
    # Figures at Rubin's nominal rate, from what each process used per alert over the step (the
    # feed may not hold the cadence on a busy machine, so a window of wall time would not be it).
    rate = ctx["args"].per_visit / ctx["args"].cadence
    fed = sum(v.size for v in produced)
    per_runner = []
    for r in runners:
        used = sampler.at(sampler.cpu[f"runner-{r.index}"], t_end) - sampler.at(sampler.cpu[f"runner-{r.index}"], t0)
        consumed = (tp._runner_totals(r.log_path) or {}).get("consumed", 0)
        per_runner.append(
            {
                "index": r.index,
                "kind": r.kind,
                "input": r.input_topic,
                "consumed": consumed,
                "cpu_s": used,
                "m_at_nominal": 1000 * used / consumed * rate if consumed else None,
                "cpu_step": sampler.rate(f"runner-{r.index}", t0, t_end),
                "pss_mib": sampler.pss_max_kib.get(r.index, 0) / 1024,
                "peak_rss_mib": sampler.hwm_max_kib.get(r.index, 0) / 1024,
            }
        )
    roles = [k for k in sampler.cpu if not k.startswith("runner-")]
    cpu_s = {k: sampler.at(sampler.cpu[k], t_end) - sampler.at(sampler.cpu[k], t0) for k in roles}
    sent = sampler.at(sampler.sent, t_end) - sampler.at(sampler.sent, t0)
    return {
        "notes": notes,
        "visits": visits,
        "runners": per_runner,
        "duplicates": dup,
        "passed": len(nominal) == n_nominal > 0 and all(r["ok"] for r in nominal),
        "peak_ok": next((r["ok"] for r in visits if r["peak"]), None),
        "drain_s": round(t_drained - max(feed.ends.values()), 1) if t_drained and feed.ends else None,
        "fed_alerts": fed,
        "feed_rate": fed / sum(r["produce_s"] for r in visits) if visits else None,
        "cores_at_nominal": {k: v / fed * rate if fed else None for k, v in cpu_s.items()},
        "cpu_step": {k: sampler.rate(k, t0, t_end) for k in roles},
        "step_s": t_end - t0,
        "pool_sent_mb_s_at_nominal": sent / fed * rate / 1e6 if fed else None,
        "pool_sent_gb": sent / 1e9,
        "pool_received_gb": (sampler.at(sampler.received, t_end) - sampler.at(sampler.received, t0)) / 1e9,
        "fed_gb": feed.bytes / 1e9,
        "alerts": total,
        "max_lag": max((x for _, x in lags), default=0),
        "lag_series": [(round(t - t0, 1), x) for t, x in lags],
    }
