#!/usr/bin/env python
"""The exact per-visit cap with replicas (issue #15): is one replica as fast as before, and what does
the cap stage cost and give?

Run from the repository root with the project venv::

    .venv/bin/python bench/cap_stage.py            # ~10-15 min on 2 cores (3 rounds)
    .venv/bin/python bench/cap_stage.py --rounds 1 # ~4 min

One local broker; one input topic of ``--alerts`` simulated alerts (20 visits interleaved, 10 KB of
cutout each, 3 partitions), produced once; every mode reads all of it with a fresh group and output:

- ``before-*`` / ``after-*``: one replica with the cap in its process, from ``--before`` (default: the
  commit before the cap stage) and ``--after`` (default: the cap stage's first commit) runtimes, each
  a ``git archive`` snapshot. ``forward-all``: accepts every alert, cap 1,000,000 (every alert goes
  through the sink's forward, the one place the change touches on this path); ``cap-20``: accepts
  every alert, cap 20 (the common case: most are capped);
- ``after-cap-20-candidates``: the same with ``--candidates-topic`` (what a filter that once had
  several replicas runs with: the start checks the topic for anything left to forward);
- ``stage-1`` / ``stage-3``: ``--cap-stage`` with 1 and 3 replicas, a slow filter (4 ms an alert,
  ~40 % accepted, cap 20), from ``--stage`` (default: HEAD); ``inproc-slow``: the slow filter with one
  replica and the in-process cap, the baseline of both.

Per mode: the wall time from the start of the processes until every input offset is committed and
every expected output is in the topic (start-up included), the alerts/s that makes, the outputs per
visit (the cap's figure), and for the stage modes the time each output waited in the stage (its
output record's timestamp less its candidate record's, both stamped by the producers on this
machine). A section is appended to ``bench/RESULTS.md``, the JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
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
ACCEPT_ALL = "def f(alert):\n    return True\n"
SLOW = "import time\ndef f(alert):\n    time.sleep(0.004)\n    return alert['diaSource']['snr'] > 12\n"


def snapshot(rev: str, work: Path) -> Path:
    """``rev``'s runtime sources in ``work/<rev>`` (the compiled skipper copied from the checkout)."""
    if rev == "WORKTREE":  # the checkout as it is (for trials)
        return ROOT / "runtime/src"
    out = work / rev
    if not out.exists():
        out.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", rev, "runtime/src"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
        for so in (ROOT / "runtime/src/alertfilter").glob("_avroskip*.so"):
            shutil.copy(so, out / "runtime/src/alertfilter" / so.name)
    return out / "runtime/src"


def produce_input(bootstrap: str, topic: str, n: int, schema_dir: Path) -> None:
    from alertfilter.codecs import encode_confluent
    from alertfilter.kafkautil import ensure_topics

    schema_dir.mkdir(parents=True, exist_ok=True)
    (schema_dir / "1.avsc").write_text(json.dumps(SCHEMA))
    parsed = fastavro.parse_schema(SCHEMA)
    rng = random.Random(7)
    alerts = [
        {
            "alertId": i,
            "diaSource": {"visit": 1000 + i % 20, "snr": rng.uniform(0, 20)},
            "cutout": rng.randbytes(10_000),
        }
        for i in range(n)
    ]
    ensure_topics(bootstrap, {topic: 3})
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, a in enumerate(alerts):
        p.produce(topic, encode_confluent(a, parsed, 1), partition=i % 3)
        p.poll(0)
    assert p.flush(60) == 0


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, int]]:
    """(value, producer timestamp ms) of every record of ``topic``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}", "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out, eof, last = [], set(), time.monotonic()
    while len(eof) < len(md.partitions) and time.monotonic() - last < 10:
        for m in c.consume(1000, 0.5):
            if m.error():
                eof.add(m.partition())
                continue
            out.append((m.value(), m.timestamp()[1]))
            last = time.monotonic()
    c.close()
    return out


def progress(c: Consumer, topic: str, group_client: Consumer) -> int:
    parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
    return sum(max(tp.offset, 0) for tp in group_client.committed(parts, timeout=10))


def count(c: Consumer, topic: str) -> int:
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None:
        return 0
    return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)


def run_mode(
    name: str,
    src: Path,
    bootstrap: str,
    inp: str,
    n: int,
    work: Path,
    filt: str,
    cap: int,
    replicas: int,
    extra: tuple[str, ...],
    expected_outputs: int,
) -> dict[str, Any]:
    from alertfilter.candidates import CANDIDATES_PARTITIONS
    from alertfilter.kafkautil import ensure_topics

    tag = uuid.uuid4().hex[:6]
    out, group = f"bench-{name}-{tag}", f"g-{name}-{tag}"
    ensure_topics(bootstrap, {out: 1, f"{out}.deadletter": 1, f"{out}.candidates": CANDIDATES_PARTITIONS})
    (work / f"{name}.py").write_text(filt)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")} | {"PYTHONPATH": str(src)}
    args = [
        sys.executable,
        "-m",
        "alertfilter",
        "run",
        "--bootstrap-servers",
        bootstrap,
        "--input",
        inp,
        "--output",
        out,
        "--filter",
        str(work / f"{name}.py"),
        "--schema-dir",
        str(work / "schemas"),
        "--group",
        group,
        "--metrics-port",
        "-1",
        "--max-alerts-per-visit",
        str(cap),
        "--id-field",
        "alertId",
        "--exit-when-idle",
        "2",
    ]
    if extra:  # "--candidates-topic" alone, or with "--cap-stage": this mode's own candidates topic
        args += ["--candidates-topic", f"{out}.candidates", *(a for a in extra if a == "--cap-stage")]
    logs = [open(work / f"{name}-{tag}-{i}.log", "wb") for i in range(replicas)]  # noqa: SIM115
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"p-{tag}"})
    group_client = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    t0 = time.monotonic()
    procs = [subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env) for log in logs]
    done_at = None
    while time.monotonic() - t0 < 600:
        if progress(probe, inp, group_client) >= n and count(probe, out) >= expected_outputs:
            done_at = time.monotonic() - t0
            break
        time.sleep(0.1)
    for p in procs:
        p.wait(120)
    probe.close()
    group_client.close()
    outputs = read_all(bootstrap, out)
    parsed = fastavro.parse_schema(SCHEMA)
    per_visit = Counter(
        fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None)["diaSource"]["visit"] for v, _ in outputs
    )
    waits: list[float] = []
    if "--cap-stage" in extra:
        made = dict(read_all(bootstrap, f"{out}.candidates"))
        waits = sorted(ts - made[v] for v, ts in outputs if v in made)
    res = {
        "mode": name,
        "replicas": replicas,
        "seconds": done_at,
        "alerts_per_s": n / done_at if done_at else None,
        "outputs": len(outputs),
        "outputs_per_visit": sorted(set(per_visit.values())),
        "exit_codes": [p.returncode for p in procs],
    }
    if waits:
        res |= {
            "stage_wait_ms_p50": waits[len(waits) // 2],
            "stage_wait_ms_p98": waits[int(len(waits) * 0.98)],
            "stage_wait_ms_max": waits[-1],
        }
    print(json.dumps(res), flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    first = subprocess.run(
        ["git", "log", "--format=%h", "--reverse", "-S", "class CapStage", "--", "runtime/src/alertfilter/capstage.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    ap.add_argument("--before", default=f"{first}^")
    ap.add_argument("--after", default=first)
    ap.add_argument("--stage", default="HEAD", help="a revision, or WORKTREE for the checkout as it is")
    ap.add_argument("--alerts", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", help="comma-separated subset of the modes")
    a = ap.parse_args()
    from alertfilter_devstack.kafka import KafkaBroker

    revs = {
        k: "WORKTREE"
        if getattr(a, k) == "WORKTREE"
        else subprocess.run(
            ["git", "rev-parse", "--short", getattr(a, k)], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        for k in ("before", "after", "stage")
    }
    work = Path(tempfile.mkdtemp(prefix="cap-stage-bench-"))
    broker = KafkaBroker(work / "kafka")
    broker.start()
    started, load0 = dt.datetime.now(dt.UTC), os.getloadavg()
    results: list[dict[str, Any]] = []
    try:
        inp = "bench-alerts"
        produce_input(broker.bootstrap, inp, a.alerts, work / "schemas")
        src = {k: snapshot(revs[k], work / "src") for k in revs}
        slow_expected = None
        modes = [
            ("before-forward-all", "before", ACCEPT_ALL, 1_000_000, 1, (), a.alerts),
            ("after-forward-all", "after", ACCEPT_ALL, 1_000_000, 1, (), a.alerts),
            ("before-cap-20", "before", ACCEPT_ALL, 20, 1, (), 400),
            ("after-cap-20", "after", ACCEPT_ALL, 20, 1, (), 400),
            ("after-cap-20-candidates", "after", ACCEPT_ALL, 20, 1, ("--candidates-topic",), 400),
            ("inproc-slow", "stage", SLOW, 20, 1, (), None),
            ("stage-1", "stage", SLOW, 20, 1, ("--cap-stage",), None),
            ("stage-3", "stage", SLOW, 20, 3, ("--cap-stage",), None),
        ]
        if a.modes:
            modes = [m for m in modes if m[0] in a.modes.split(",")]
        for rnd in range(a.rounds):
            for name, rev, filt, cap, replicas, extra, expected in modes:
                res = run_mode(
                    name,
                    src[rev],
                    broker.bootstrap,
                    inp,
                    a.alerts,
                    work,
                    filt,
                    cap,
                    replicas,
                    extra,
                    expected if expected is not None else (slow_expected or 0),
                )
                if name == "inproc-slow":
                    slow_expected = res["outputs"]
                res["round"] = rnd + 1
                results.append(res)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    write(results, revs, a, started, load0)
    return 0


def write(
    results: list[dict[str, Any]],
    revs: dict[str, str],
    a: argparse.Namespace,
    started: dt.datetime,
    load0: tuple[float, ...],
) -> None:
    stamp = started.strftime("%Y-%m-%d-%H%M%S")
    (ROOT / "bench/results").mkdir(exist_ok=True)
    (ROOT / f"bench/results/cap-stage-{stamp}.json").write_text(
        json.dumps({"revs": revs, "results": results}, indent=1)
    )
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_mode.setdefault(r["mode"], []).append(r)
    lines = [
        f"## {started:%Y-%m-%d %H:%M} UTC — the cap stage (issue #15)",
        "",
        f"- command: `.venv/bin/python bench/cap_stage.py --rounds {a.rounds} --alerts {a.alerts}`; before = `{revs['before']}`, "
        f"after = `{revs['after']}`, stage = `{revs['stage']}` (each a `git archive` of the runtime)",
        f"- machine: {os.cpu_count()} cores; load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end (shared with other work)",
        f"- {a.alerts} simulated alerts (10 KB cutout, 20 visits interleaved, 3 partitions) on one local broker; seconds: process start to every "
        "input offset committed and every output in the topic (start-up included); median of the rounds (all rounds in brackets)",
        "",
        "| mode | replicas | seconds | alerts/s | outputs | outputs per visit | stage wait p50 / p98 / max ms |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for mode, rs in by_mode.items():
        secs = [r["seconds"] for r in rs if r["seconds"]]
        med = statistics.median(secs) if secs else None
        waits = ""
        if "stage_wait_ms_p50" in rs[0]:
            waits = " / ".join(
                str(int(statistics.median(r[k] for r in rs)))
                for k in ("stage_wait_ms_p50", "stage_wait_ms_p98", "stage_wait_ms_max")
            )
        lines.append(
            f"| {mode} | {rs[0]['replicas']} | {med:.1f} ({', '.join(f'{s:.1f}' for s in secs)}) | "
            f"{a.alerts / med:,.0f} | {rs[0]['outputs']:,} | {', '.join(map(str, rs[0]['outputs_per_visit']))} | {waits} |"
            if med
            else f"| {mode} | {rs[0]['replicas']} | – | – | {rs[0]['outputs']} | | |"
        )
    lines += ["", f"JSON: `results/cap-stage-{stamp}.json`.", ""]
    with open(ROOT / "bench/RESULTS.md", "a") as f:
        f.write("\n" + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
