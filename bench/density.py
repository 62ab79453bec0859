#!/usr/bin/env python
"""Density (issue #14): how many filter runners a machine holds at Rubin's nominal rate with real-size
alerts, reading the full stream and reading the lean stream.

Run from the repository root with the project venv::

    .venv/bin/python bench/density.py                       # N = 5, 10, 20, 40... per mode until one fails
    .venv/bin/python bench/density.py --quick               # ~5 min: N = 2, small visits, checks the set-up
    .venv/bin/python bench/density.py --modes full --n 2,5,10 --visits 2 --deadline 18:10

One central and one pool broker (``alertfilter_devstack.kafka.KafkaBroker``, Kafka 4.x from
``.cache/kafka``) and MirrorMaker 2 between them, with the local stack's settings. For each mode and
N, a fresh input topic on the central broker; N ``alertfilter run`` processes (each with its filter
process, as a pod) read its mirror on the pool broker (``lean``: filters that read no cutout read
the lean topic that one ``alertfilter lean`` process makes there); a feed produces ``--visits``
visits of ``--per-visit`` alerts every ``--cadence`` s, then one ``--peak`` visit. Alerts are the
shared real ones (``rubin-v10_0-real-20`` and ``rubin-v10_0-history-4``, 24 distinct, one in six
with a long history), each copy with a fresh ``diaSourceId`` and the visit's id spliced in.

Filters (``--mix``, repeated over the runners): ``diasource`` cuts (read ``diaSource``),
``lightcurve`` (three fields of every ``prvDiaSources`` record, as in the README), ``cutout``
(reads ``cutoutDifference``). Each accepts a known 1 % of the alerts (by id, a different 1 % per
filter), so every visit has accepted alerts to time. Latency: an accepted alert's record timestamp
on its output topic minus the time the visit's last alert was acknowledged by the central broker;
an expected alert that never arrives counts as infinitely late. A step passes when every nominal
visit's p98 is under 60 s and the feed held the cadence (each nominal visit produced within its 39 s,
started at most 5 s late); the sweep stops at the first N that fails. Results: a section of
``bench/RESULTS.md``, JSON in ``bench/results/density-<date>.json``, ``bench/results/density.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import density_model as dm
import density_report as report
import density_stack as ds
import throughput as tp
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from density_feed import DEFAULT_MIX, FILTERS, FIRST_VISIT, READS_CUTOUTS, Feed, alert_values, collect, failed_step

from alertfilter.kafkautil import ensure_topics

ROOT, BENCH = tp.ROOT, tp.BENCH

#: A step holds up to ~RETENTION_S of the feed on each broker (in memory) plus the outputs and the
#: runners: start none with less memory available than this ...
MIN_FREE_MEMORY = 6e9
#: ... and stop one when it gets this low (the machine is shared).
LOW_MEMORY = 2.5e9


def runner_args(ctx: dict[str, Any], topic: str) -> list[str]:
    """The options every runner of a step gets (besides filter, group, output, name)."""
    return [
        "--bootstrap-servers",
        ctx["pool"],
        "--input",
        topic,
        "--schema-dir",
        str(ctx["schema_dir"]),
        "--decoder",
        "cavro",
        "--no-visit-cap",
        "--metrics-port",
        "-1",
        "--visit-field",
        "diaSource.visit",
        "--id-field",
        "diaSourceId",
        "--fields",
        "auto",
        "--create-topics",
        "--topic-wait",
        "120",
    ]


def reads_lean(source: str, kind: str) -> bool:
    """Whether the operator routes this filter to the lean stream (``alertfilter.routing``, the
    operator's own rule; without it, every kind but those that read a cutout)."""
    try:
        from alertfilter.routing import route
    except ImportError:
        return kind not in READS_CUTOUTS
    name = source.split("def ", 1)[1].split("(", 1)[0]
    return route(source, name, "diaSource.visit", "diaSourceId").lean


def lean_setup(ctx: dict[str, Any], topic: str, work: Path) -> tuple[subprocess.Popen[bytes], str, list[str]]:
    """Start the pool's lean producer (``alertfilter lean``, one process, as the operator deploys one
    per pool) on ``topic``: ``(process, lean topic, the options that make a runner read it)``.

    Raises:
        RuntimeError: the lean topic did not appear (the process's log says why).
    """
    lean_topic = f"{topic}.lean"
    cmd = [
        sys.executable,
        "-m",
        "alertfilter",
        "lean",
        "--bootstrap-servers",
        ctx["pool"],
        "--input",
        topic,
        "--lean-topic",
        lean_topic,
        "--group",
        f"density-lean-{work.name}",
        "--schema-dir",
        str(ctx["schema_dir"]),
        "--metrics-port",
        "-1",
        "--create-topics",
        "--topic-wait",
        "120",
    ]
    with open(work / "lean.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=ctx["env"])
    try:
        ds.wait_for_topic(ctx["pool"], lean_topic, 150)
    except RuntimeError:
        ds.stop_procs([proc])
        raise
    return proc, lean_topic, ["--full-topic", topic]


def run_step(ctx: dict[str, Any], mode: str, n: int, step: int) -> dict[str, Any]:
    """One mode and N: start the runners, feed the schedule, drain, read every output; the step's figures."""
    a = ctx["args"]
    work = ctx["work"] / f"step-{step}-{mode}-{n}"
    work.mkdir()
    topic = f"{ctx['prefix']}{step}"
    loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t_setup = time.time()
    ensure_topics(ctx["central"], {topic: a.partitions}, config={"max.message.bytes": str(10 * 1024 * 1024)})
    ds.wait_for_topic(ctx["pool"], topic, 120)
    lean_proc: subprocess.Popen[bytes] | None = None
    lean_topic: str | None = None
    lean_args: list[str] = []
    others = dict(ctx["stack_pids"], bench=os.getpid())
    if mode == "lean":
        lean_proc, lean_topic, lean_args = lean_setup(ctx, topic, work)
        others["lean producer"] = lean_proc.pid
    kinds = a.mix.split(",")
    runners: list[ds.RunnerProc] = []
    note: list[str] = []
    result: dict[str, Any] = {"mode": mode, "n": n, "step": step, "topic": topic, "loadavg_start": loadavg_start}
    try:
        # the outputs outlive the step's input retention: they are read once the step ends
        outputs = {t: 1 for i in range(n) for t in (f"{topic}-out-{i}", f"{topic}-out-{i}.deadletter")}
        ensure_topics(ctx["pool"], outputs, config={"retention.ms": "3600000", "max.message.bytes": str(10 * 2**20)})
        for i in range(n):
            kind = kinds[i % len(kinds)]
            residue = i % dm.ACCEPT_MODULUS
            src = FILTERS[kind].replace("{m}", str(dm.ACCEPT_MODULUS)).replace("{r}", str(residue))
            inp = str(lean_topic) if mode == "lean" and reads_lean(src, kind) else topic
            extra = [] if inp == topic else lean_args
            runners.append(
                ds.start_runner(
                    i, kind, residue, src, runner_args(ctx, inp) + extra, work, f"{topic}-out-{i}", inp, ctx["env"]
                )
            )
        deadline = time.monotonic() + 120 + 5 * n
        while not all(r.assigned() for r in runners):
            dead = [r for r in runners if r.proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"runners not started: {[r.index for r in dead] or 'timeout'}; log {(dead or runners)[0].log_path}"
                )
            time.sleep(1)
        result["startup_s"] = round(time.time() - t_setup, 1)
        sampler = ds.Sampler(runners, others, int(ctx["pool"].rsplit(":", 1)[1]))
        sampler.sample()
        sched = dm.visit_schedule(a.visits, a.per_visit, a.peak, a.cadence, FIRST_VISIT + 100 * step)
        t0 = time.time() + 2
        feed = Feed(ctx["central"], topic, ctx["values"], ctx["splicer"], sched, t0)
        feed.start()
        admin = AdminClient({"bootstrap.servers": ctx["pool"], "log_level": 3})
        probe = Consumer({"bootstrap.servers": ctx["pool"], "group.id": "density-probe", "log_level": 3})
        lags: list[tuple[float, int]] = []
        peak = next((v for v in sched if v.peak), None)
        total = sum(v.size for v in sched)
        t_drained: float | None = None
        skip_lag = 0
        while True:
            time.sleep(a.sample_s)
            sampler.sample()
            ends = {t: ds.end_offset(probe, t, a.partitions) for t in {r.input_topic for r in runners}}
            done = ds.committed(admin, [r.group for r in runners])
            ends.setdefault(topic, ds.end_offset(probe, topic, a.partitions))
            # against what was produced: a runner is as far behind as MirrorMaker 2 (and the lean producer) are
            lag = max(max(ends[r.input_topic], ends[topic], feed.produced) - done[r.group] for r in runners)
            lags.append((time.time(), lag))
            due = peak is not None and time.time() > t0 + peak.start_s - 2 * a.sample_s
            # only before the feed starts the peak: its own alerts in flight are no backlog
            if due and peak.index not in feed.starts and not feed.skip_peak.is_set() and lag > a.per_visit:
                feed.skip_peak.set()
                skip_lag = lag
            if ds.mem_available() < LOW_MEMORY:
                note.append(f"stopped: under {LOW_MEMORY / 1e9:.1f} GB of memory available")
                break
            exited = [r.index for r in runners if r.proc.poll() is not None]
            if exited:
                note.append(f"runners {exited} exited (code {runners[exited[0]].proc.returncode})")
                break
            if not feed.is_alive():
                produced = sum(v.size for v in sched if v.index not in feed.skipped)
                if feed.error:
                    note.append(f"feed failed: {feed.error}")
                    break
                fed = all(e >= produced for e in ends.values())
                if fed and lag == 0:
                    t_drained = time.time()
                    break
                if time.time() > max(feed.ends.values(), default=t0) + a.drain:
                    note.append(f"not drained {a.drain:.0f} s after the last visit (lag {lag:,})")
                    break
        t_stop = time.time()
        probe.close()
        feed.stop.set()
        feed.join(60)
        if peak is not None and peak.index in feed.skipped:  # set too late, the peak ran: no note
            note.append(f"peak skipped: runners {skip_lag:,} alerts behind when it was due")
    finally:
        ds.stop_procs([r.proc for r in runners] + ([lean_proc] if lean_proc is not None else []))
    result.update(collect(ctx, sampler, runners, sched, feed, t0, t_stop, t_drained, lags, total))
    broken = feed.error is not None or any("exited" in x or "memory" in x for x in note)
    slow = dm.cadence_problem(result["visits"], ctx["args"].cadence)  # a slowed stream is not the nominal rate
    note += [slow] if slow else []
    result["latency_passed"], result["cadence_held"] = result["passed"] and not broken, slow is None
    result["passed"] = result["latency_passed"] and slow is None
    result["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # what the processes counted themselves ("stopped; totals" in their logs)
    totals = [tp._runner_totals(r.log_path) or {} for r in runners]
    result["runner_totals"] = {k: sum(t.get(k, 0) for t in totals) for k in ("consumed", "accepted", "dead_letters")}
    if result["runner_totals"]["dead_letters"]:
        note.append(f"{result['runner_totals']['dead_letters']} dead letters")
    result["lean_totals"] = tp._runner_totals(work / "lean.log") if lean_proc is not None else None
    result["note"] = "; ".join(note + result.pop("notes"))
    tp.delete_topics(ctx["central"], [topic])  # first: MirrorMaker 2 then stops mirroring it
    tp.delete_topics(
        ctx["pool"],
        [
            topic,
            *([lean_topic] if lean_topic else []),
            *(t for r in runners for t in (r.output, f"{r.output}.deadletter")),
        ],
    )
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N=2, 1 visit of 1,000, a peak of 2,000, 15 s cadence")
    p.add_argument("--modes", default="full,lean", help="full, lean or both (default: full,lean)")
    p.add_argument("--n", default="5,10,20,40", help="runner counts, ascending; below the first if it fails")
    p.add_argument("--visits", type=int, default=3, help="nominal visits per step (default 3)")
    p.add_argument("--per-visit", type=int, default=10_000, help="alerts per nominal visit (default 10,000)")
    p.add_argument("--peak", type=int, default=40_000, help="alerts of the peak visit, 0: none (default 40,000)")
    p.add_argument("--cadence", type=float, default=39.0, help="seconds between visits (default 39)")
    p.add_argument("--drain", type=float, default=150.0, help="wait after the last visit, s (default 150)")
    p.add_argument("--partitions", type=int, default=1, help="partitions of the input topic (the local stack: 1)")
    p.add_argument("--mix", default=DEFAULT_MIX, help=f"filter kinds, repeated over the runners ({', '.join(FILTERS)})")
    p.add_argument("--sample-s", type=float, default=2.0, help="sampling interval, s")
    p.add_argument("--deadline", help="HH:MM UTC: start no step that would end after it")
    p.add_argument("--results-dir", type=Path, default=BENCH, help="where RESULTS.md and results/ go")
    p.add_argument("--refine", type=int, default=1, help="bisection steps between the last pass and the first fail")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, broker data)")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.visits, a.per_visit, a.peak, a.cadence, a.drain = "2", 1, 1_000, 2_000, 15.0, 60.0
    modes = a.modes.split(",")
    bad = [m for m in modes if m not in ("full", "lean")] + [k for k in a.mix.split(",") if k not in FILTERS]
    ns = sorted({int(x) for x in a.n.split(",")})
    if bad or not ns or ns[0] < 1:
        p.error(f"unknown modes or filter kinds {bad}, or N not >= 1: {a.n}")
    deadline = None
    if a.deadline:
        hh, mm = (int(x) for x in a.deadline.split(":"))
        now = dt.datetime.now(dt.UTC)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()

    # SIGTERM (and SIGINT, which a shell's background job ignores) end the run through its finally
    # clauses: runners, the lean producer, MirrorMaker 2 and the brokers are stopped, never orphaned.
    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started = dt.datetime.now(dt.UTC)
    loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="alertfilter-density-"))
    schema, sid, values = alert_values()
    (work / "schemas").mkdir()
    (work / "schemas" / f"{sid}.avsc").write_text(json.dumps(schema))
    run_id = uuid.uuid4().hex[:6]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
    stack = ds.Stack(work / "stack", f"density-{run_id}-")
    steps: list[dict[str, Any]] = []
    failed = False
    try:
        stack.start()
        ctx = {
            "args": a,
            "work": work,
            "central": stack.central.bootstrap,
            "pool": stack.pool.bootstrap,
            "schema_dir": work / "schemas",
            "values": values,
            "prefix": f"density-{run_id}-",
            "splicer": dm.Splicer(schema, ("diaSourceId", "diaSource.diaSourceId"), "diaSource.visit"),
            "stack_pids": stack.pids(),
            "env": env,
        }
        for mode in modes:
            passed: dict[int, bool] = {}
            refine_left = a.refine
            while True:
                nxt, refining = dm.next_n(passed, ns, refine_left)
                if nxt is None:
                    break
                n, refine_left = nxt, refine_left - refining
                # a step takes about as long as the longest one before it (at least its visits and drain)
                # (the feed makes ~150-250 real alerts/s on this machine when it is busy)
                est = max(
                    [s.get("duration_s", 0) for s in steps] + [a.visits * a.cadence + a.peak / 200 + a.drain + 60]
                )
                if n > (ns[-1] if a.quick else 4 * ns[-1]):  # past the list: double up to 4x its end
                    break
                if deadline and time.time() + est > deadline:
                    print(f"[{mode}] N={n}: skipped, would end after the deadline", flush=True)  # noqa: T201
                    break
                if ds.mem_available() < MIN_FREE_MEMORY:
                    print(f"[{mode}] N={n}: skipped, under {MIN_FREE_MEMORY / 1e9:.0f} GB of memory", flush=True)  # noqa: T201
                    break
                t = time.time()
                try:
                    res = run_step(ctx, mode, n, len(steps))
                except Exception as exc:  # noqa: BLE001 - a step that cannot run fails; the sweep goes on
                    traceback.print_exc()
                    res = failed_step(mode, n, len(steps), f"{type(exc).__name__}: {exc}"[:400])
                res["duration_s"] = round(time.time() - t, 1)
                steps.append(res)
                passed[n] = res["passed"]
                print(report.step_line(res), flush=True)  # noqa: T201
    except BaseException:
        failed = True
        raise
    finally:
        stack.stop()
        if failed or a.keep:
            print(f"work folder kept: {work}", file=sys.stderr)  # noqa: T201
        else:
            shutil.rmtree(work, ignore_errors=True)
    cmd = " ".join(shlex.quote(x) for x in [".venv/bin/python", os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "quick": a.quick,
        "command": cmd,
        "machine": tp.machine_info(),
        "loadavg_start": loadavg_start,
        "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "duration_s": (dt.datetime.now(dt.UTC) - started).total_seconds(),
        "args": {k: v for k, v in vars(a).items() if k != "results_dir"},
        "mean_bytes": sum(map(len, values)) // len(values),
        "distinct_alerts": len(values),
        "retention_s": ds.RETENTION_S,
        "central_retention_s": ds.CENTRAL_RETENTION_S,
    }
    report.write(meta, steps, a.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
