#!/usr/bin/env python
"""Runner speed (issue #13): the runner against the client's own limit, old loop against new, and
three kinds of filter, on the same topics of one broker in one run.

Run from the repository root with the project venv::

    .venv/bin/python bench/runner_speed.py                 # ~15-25 min on 2 cores (--repeat 2)
    .venv/bin/python bench/runner_speed.py --quick         # ~4 min: fewer alerts, one round

Per dataset (``real-20`` replicated to 10,000 messages, ``history-4`` to 2,000), one input topic is
produced once; every mode then reads all of it from the start with a fresh group:

- ``consume-default`` / ``consume-sizes`` / ``consume-tuned``: confluent-kafka ``consume()`` and
  nothing else, with librdkafka's defaults, with 16 MiB / 64 MiB fetches, and with the runner's
  whole consumer tuning (``alertfilter.clients.CONSUMER_TUNING``: those sizes and a 10 ms fetch
  queue back-off);
- ``kafka-perf`` / ``kafka-perf-tuned``: Kafka's own ``ConsumerPerformance`` (the JVM client, jars
  from ``.cache/kafka``), with its defaults and with 16 MiB / 64 MiB fetches (its fetch rate);
- ``old-<filter>``: ``alertfilter run`` from ``--old REV``'s runtime (a ``git archive`` snapshot,
  default: the commit before the pipelined loop), ``new-<filter>``: from the working tree;
- filters: ``diasource`` (reads ``diaSource`` only), ``lightcurve`` (three fields of every
  ``prvDiaSources`` record, in comprehensions), ``columns`` (the same through ``alert.history``, new
  only), ``whole`` (``len(alert)``: the whole alert is decoded); each accepts every alert, so every
  input becomes an output (the worst case: the runner writes back all it reads);
- ``<side>-<filter>-sparse``: the same filters accepting one alert in 100, as a science filter does
  (a few per visit): the runner's cost is reading and filtering; progress is then the runner's
  committed offsets (read as its consumer group, never joining it), not its outputs;
- ``new-diasource-eos``: the new runner with ``--exactly-once`` (one transaction per batch);
- ``new-diasource-untuned``: the new loop with librdkafka's defaults for what the runner tunes.

Rates are steady-state (as ``bench/throughput.py``: first output to last acknowledged output for
the runner, first message in hand to the last for the consume loops); alerts/CPU-s counts the
runner's filter process too. Results: a section appended to ``bench/RESULTS.md``, JSON in
``bench/results/runner-speed-<date>.json``, a plot ``bench/results/runner-speed.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402  (the shared measurement helpers)
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition  # noqa: E402

ROOT, BENCH = tp.ROOT, tp.BENCH
from alertfilter.clients import CONSUMER_TUNING  # noqa: E402

#: The issue's "tuned" fetch sizes alone (``consume-sizes``); ``consume-tuned`` is the runner's whole tuning.
SIZES = {"max.partition.fetch.bytes": 16 * 1024 * 1024, "fetch.max.bytes": 64 * 1024 * 1024}
#: librdkafka's defaults of what the runner tunes (``new-diasource-untuned``: the new loop alone).
UNTUNED = ["-X", "max.partition.fetch.bytes=1048576", "-X", "fetch.max.bytes=52428800",
           "-X", "fetch.queue.backoff.ms=1000", "-X", "compression.type=none"]
FILTERS = {
    "diasource": "def reads_diasource(alert):\n    return alert['diaSource'] is not None\n",
    "lightcurve": (
        "def light_curve(alert):\n"
        "    flux = [p['psfFlux'] for p in alert['prvDiaSources'] or []]\n"
        "    mjd = [p['midpointMjdTai'] for p in alert['prvDiaSources'] or []]\n"
        "    band = [p['band'] for p in alert['prvDiaSources'] or []]\n"
        "    rising = len(flux) > 1 and (flux[-1] or 0) > (flux[0] or 0) and mjd[-1] > mjd[0]\n"
        "    return rising or len(band) >= 0  # every alert goes on: the bench counts outputs\n"
    ),
    "columns": (
        "def light_curve_columns(alert):\n"
        "    flux, mjd, band = alert.history('prvDiaSources', 'psfFlux', 'midpointMjdTai', 'band')\n"
        "    rising = len(flux) > 1 and flux[-1] > flux[0] and mjd[-1] > mjd[0]\n"
        "    return bool(rising) or len(band) >= 0\n"
    ),
    "whole": "def whole(alert):\n    return len(alert) > 0\n",
}
#: The same filters accepting one alert in ``SPARSE_EVERY`` (``<side>-<filter>-sparse``): as a science
#: filter does (a few per visit), so the runner's cost is reading and filtering, not producing
#: every input again. Progress is then the runner's committed offsets, not its outputs.
SPARSE_EVERY = 100
FILTERS.update({
    f"{name}-sparse": src.replace("def ", "_seen = 0\n\n\ndef ", 1).replace(
        "    return ", "    global _seen\n    _seen += 1\n    return _seen % SPARSE == 0 and (", 1
    ).replace("SPARSE", str(SPARSE_EVERY)).rstrip("\n").split("  #")[0] + ")\n"
    for name, src in list(FILTERS.items()) if name != "whole"
})


def mode_consume(bs: str, inp: str, ds: tp.Dataset, mode: str, conf: dict[str, Any], budget: float) -> tp.ModeResult:
    """``consume()`` in a loop, nothing else (the runner's consumer settings, batches of its size)."""
    res = tp.ModeResult(ds.name, mode, ds.n)
    prog = tp.Progress()
    c = Consumer({**tp.runner_consumer_conf(bs, f"bench-{mode}-{uuid.uuid4().hex[:8]}"), **conf})
    done, nbytes = 0, 0
    try:
        c.subscribe([inp])
        while done < ds.n and time.monotonic() < prog.t0 + budget:
            msgs = c.consume(tp.BATCH, tp.POLL_TIMEOUT_S)
            got = [m for m in msgs if m.error() is None]
            for m in msgs:
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
            if not got:
                continue
            if not prog.samples:
                prog.mark(0, start=True)
            done += len(got)
            nbytes += sum(len(m.value() or b"") for m in got)
            prog.mark(done)
    finally:
        c.close()
    res.wall_s = time.monotonic() - prog.t0
    res.finish(prog.t0, prog.samples)
    res.output_count = res.processed
    return res


def mode_kafka_perf(bs: str, inp: str, ds: tp.Dataset, mode: str, tuned: bool, work: Path) -> tp.ModeResult:
    """Kafka's ConsumerPerformance on the topic: its fetch rate (rebalance time excluded)."""
    from alertfilter_devstack.kafka import java_bin, kafka_libs

    res = tp.ModeResult(ds.name, mode, ds.n)
    args = [java_bin(), "-Xmx1g", "-cp", f"{kafka_libs()}/*", "org.apache.kafka.tools.ConsumerPerformance",
            "--bootstrap-server", bs, "--topic", inp, "--messages", str(ds.n), "--timeout", "60000",
            "--group", f"bench-{mode}-{uuid.uuid4().hex[:8]}"]
    if tuned:
        cfg = work / "perf-tuned.properties"
        cfg.write_text(f"max.partition.fetch.bytes={SIZES['max.partition.fetch.bytes']}\n"
                       f"fetch.max.bytes={SIZES['fetch.max.bytes']}\n")
        args += ["--fetch-size", str(SIZES["max.partition.fetch.bytes"]), "--consumer.config", str(cfg)]
    t0 = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    res.wall_s = time.monotonic() - t0
    lines = [ln for ln in out.stdout.splitlines() if re.match(r"^\d{4}-\d\d-\d\d", ln)]
    if out.returncode != 0 or not lines:
        res.ok, res.note = False, f"exit {out.returncode}: {(out.stderr or out.stdout)[-300:]}"
        return res
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    f = [x.strip() for x in lines[-1].split(",")]
    res.processed = res.output_count = int(f[4])
    res.complete = res.processed >= ds.n
    res.steady_rate = float(f[9])
    res.steady_s = float(f[7]) / 1000
    res.e2e_rate = float(f[5])
    res.note = f"fetch time {float(f[7]) / 1000:.1f} s, rebalance {float(f[6]) / 1000:.1f} s; whole run {float(f[5]):,.0f}/s"
    return res


def mode_runner(bs: str, inp: str, out: str, ds: tp.Dataset, work: Path, budget: float, mode: str, filt: str,
                extra: list[str], runtime_src: Path | None) -> tp.ModeResult:
    """``alertfilter run`` as a child process with filter ``filt`` (see throughput.mode_runner)."""
    assert ds.schema_dir is not None
    tp.ensure_topics(bs, {out: 1, f"{out}.deadletter": 1})
    flt = work / f"{filt}.py"
    flt.write_text(FILTERS[filt])
    log_path = work / f"{mode}-{ds.name}-{uuid.uuid4().hex[:4]}.log"
    res = tp.ModeResult(ds.name, mode, ds.n)
    args = [sys.executable, "-m", "alertfilter", "run", "--bootstrap-servers", bs, "--input", inp, "--output", out,
            "--filter", str(flt), "--schema-dir", str(ds.schema_dir), "--group", f"bench-{mode}-{uuid.uuid4().hex[:8]}",
            "--decoder", "cavro", "--no-visit-cap", "--exit-when-idle", "2", "--metrics-port", "-1",
            "--visit-field", ds.visit_field, "--id-field", ds.id_field, "--fields", "auto", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
    if runtime_src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(runtime_src), *filter(None, [env.get("PYTHONPATH")])])
    sparse = filt.endswith("-sparse")
    group = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    args[args.index("--group") + 1] = group
    # A sparse filter's progress is its group's committed offsets (read as that group, never joining it).
    watcher = Consumer({"bootstrap.servers": bs, "group.id": group if sparse else f"bench-watch-{uuid.uuid4().hex[:8]}",
                        "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
    parts = [TopicPartition(inp, p) for p in watcher.list_topics(inp, timeout=10).topics[inp].partitions]

    def progress(retry_s: float = 5.0) -> int:
        if not sparse:
            return tp.high_watermark(watcher, out, retry_s=retry_s)
        return sum(max(t.offset, 0) for t in watcher.committed(parts, timeout=max(retry_s, 1.0)))

    samples: list[tp.Sample] = []
    t_term: float | None = None
    with open(log_path, "wb") as log:
        t_start = time.monotonic()
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        hw = 0
        while True:
            now = time.monotonic()
            if hw < ds.n:
                s = tp.sample(0, proc.pid, tree=True)
                try:
                    hw = progress(retry_s=0)
                except KafkaException:
                    hw = samples[-1].count if samples else 0
                s.count, s.t = hw, time.monotonic()
                samples.append(s)
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rusage, t_exit = ru, time.monotonic()
                proc.returncode = os.waitstatus_to_exitcode(st)
                break
            if t_term is None and now - t_start > budget:
                proc.send_signal(signal.SIGTERM)
                t_term = now
            elif t_term is not None and now - t_term > 60:
                proc.kill()
            time.sleep(0.05)
        final = progress()
        dead = tp.high_watermark(watcher, f"{out}.deadletter")
    finally:
        if proc.returncode is None:
            proc.kill()
            os.waitpid(proc.pid, 0)
        watcher.close()
    if "--exactly-once" in extra:  # transaction markers take one offset per transaction
        final = min(final, ds.n)
        samples = [tp.Sample(s.t, min(s.count, ds.n), s.cpu, s.bcpu, s.start, s.mcpu) for s in samples]
    res.wall_s = t_exit - t_start
    res.total_cpu_s = rusage.ru_utime + rusage.ru_stime
    res.finish(t_start, samples)
    first = next((s for s in samples if s.count > 0), None)
    res.startup_s = first.t - t_start if first else None
    res.output_count, res.dead_letters = final, dead
    totals = tp._runner_totals(log_path)
    expect = ("consumed", ds.n) if sparse else ("accepted", ds.n)
    if proc.returncode != 0 or dead or (totals and totals.get(expect[0]) != expect[1] and t_term is None):
        res.ok = False
        res.note = f"exit {proc.returncode}, dead letters {dead}, totals {totals}; log {log_path}"
        print("\n".join(log_path.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    if t_term is not None:
        res.note = (res.note + f" time budget {budget:.0f} s reached (SIGTERM)").strip()
    return res


def snapshot(rev: str, work: Path) -> Path:
    """``rev``'s ``runtime/src`` in ``work`` (``git archive``), with the compiled skipper copied in."""
    dest = work / f"runtime-{rev[:12]}"
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "runtime/src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    src = dest / "runtime" / "src"
    for so in (ROOT / "runtime" / "src" / "alertfilter").glob("_avroskip*.so"):
        shutil.copy(so, src / "alertfilter" / so.name)
    return src


def markdown(meta: dict[str, Any], results: list[tp.ModeResult], dsets: list[tp.Dataset]) -> str:
    m = meta["machine"]
    out = [f"## {meta['date']} — runner speed (issue #13){' (quick)' if meta['quick'] else ''}", "",
           f"- command: `{meta['command']}` (from `/work/main`)",
           f"- machine: {m['nproc']} cores ({m['cpu_model']}), kernel {m['kernel']}; load average "
           f"{meta['loadavg_start']} at start, {meta['loadavg_end']} at end (other work was running)",
           f"- software: Python {m['python']}, cavro {m['cavro']}, confluent-kafka {m['confluent_kafka']} "
           f"(librdkafka {m['librdkafka']}), Apache Kafka {m['kafka']} (one local KRaft broker); new = working "
           f"tree at {m['git']}, old = `{meta['old']}`'s runtime (`git archive`)",
           f"- run time {meta['duration_s'] / 60:.1f} min; time budget per mode {meta['budget_s']:.0f} s; "
           f"{meta['repeat']} round(s), round-robin, best round shown (every round in the JSON)", "",
           "| dataset | alerts in topic | mean bytes |", "|---|---:|---:|"]
    out += [f"| {d.name}: {d.label} | {d.n:,} | {d.mean_bytes:,} |" for d in dsets]
    out += ["", "alerts/s: steady state; **× tuned** = rate / `consume-tuned`'s rate on the same topic in "
            "this run; MB/s = alerts/s × mean bytes; alerts/CPU-s: the runner's process and its filter "
            "process; CPU % of one core; broker % the broker JVM's; machine % of all cores, anyone's "
            "(200 = both busy).", "",
            "| dataset | mode | alerts/s | MB/s | × tuned | alerts/CPU-s | CPU % | broker % | machine % | done | note |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    by_ds = {d.name: d for d in dsets}
    for r in results:
        mb = r.steady_rate * by_ds[r.dataset].mean_bytes / 1e6 if r.steady_rate else None
        out.append(f"| {r.dataset} | {r.mode} | {tp.fmt(r.steady_rate)} | {tp.fmt(mb)} | "
                   f"{tp.fmt(r.ratio_to_pass_through, 2)} | {tp.fmt(r.alerts_per_cpu_s)} | {tp.pct(r.cpu_util)} | "
                   f"{tp.pct(r.broker_cpu_util)} | {tp.pct(r.machine_cpu_util)} | {r.processed:,} | {'' if r.ok else 'FAILED '}{r.note} |")
    return "\n".join(out) + "\n"


def plot(results: list[tp.ModeResult], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install -r bench/requirements.txt)", file=sys.stderr)
        return
    dsets = list(dict.fromkeys(r.dataset for r in results))
    fig, axes = plt.subplots(1, len(dsets), figsize=(7 * len(dsets), 5.5), squeeze=False)
    for ax, name in zip(axes[0], dsets):
        rs = [r for r in results if r.dataset == name and r.steady_rate]
        colours = ["#999999" if r.mode.startswith(("consume", "kafka")) else "#d62728" if r.mode.startswith("old")
                   else "#1f77b4" for r in rs]
        ax.barh([r.mode for r in rs], [r.steady_rate for r in rs], color=colours)
        for i, r in enumerate(rs):
            ax.text(r.steady_rate, i, f" {r.steady_rate:,.0f}" + (f" ({r.ratio_to_pass_through:.2f}×)"
                                                                   if r.ratio_to_pass_through else ""), va="center",
                    fontsize=8)
        ax.invert_yaxis()
        ax.set_title(name)
        ax.set_xlabel("alerts/s (grey: consume only; red: old loop; blue: new)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 / 200 alerts, one round")
    p.add_argument("--repeat", type=int, help="rounds, round-robin; the best of each mode is shown (default 2)")
    p.add_argument("--budget", type=float, default=120.0, help="time budget per mode, s")
    p.add_argument("--old", default="0c38f42^", help="the revision whose runtime is the old loop")
    p.add_argument("--results-dir", type=Path, default=BENCH, help="where RESULTS.md and results/ go")
    p.add_argument("--modes", help="comma-separated subset of the modes")
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 2)
    dsets = [d for d in tp.datasets(args.quick) if d.name in ("real-20", "history-4")]
    from alertfilter_devstack.kafka import KafkaBroker

    started = dt.datetime.now(dt.timezone.utc)
    t_run = time.monotonic()
    loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="alertfilter-speed-"))
    old_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.old], capture_output=True,
                             text=True, check=True).stdout.strip()
    old_src = snapshot(args.old, work)
    results: list[tp.ModeResult] = []
    all_runs: list[tp.ModeResult] = []
    failed = False
    broker = None
    try:
        for attempt in range(3):
            broker = KafkaBroker(work / f"kafka-{attempt}", heap="1g")
            try:
                broker.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        assert broker is not None
        tp.BROKER_PID = broker.proc.pid if broker.proc else None
        bs = broker.bootstrap
        run_id = uuid.uuid4().hex[:6]
        for ds in dsets:
            tp.prepare(ds, work)
            inp = f"speed-{run_id}-{ds.name}-in"
            secs = tp.produce_input(bs, inp, ds)
            print(f"[{ds.name}] {ds.n:,} alerts ({ds.mean_bytes:,} B mean) produced in {secs:.1f} s", flush=True)
            warm = f"speed-{run_id}-{ds.name}-warm"
            tp.mode_kafka_loop(bs, inp, warm, ds, "warm-up", None, args.budget, limit=min(ds.n, 2_000))
            tp.delete_topics(bs, [warm])
            plan: list[tuple[str, Callable[[str], tp.ModeResult]]] = [
                ("consume-default", lambda out: mode_consume(bs, inp, ds, "consume-default", {}, args.budget)),
                ("consume-sizes", lambda out: mode_consume(bs, inp, ds, "consume-sizes", SIZES, args.budget)),
                ("consume-tuned", lambda out: mode_consume(bs, inp, ds, "consume-tuned", CONSUMER_TUNING,
                                                           args.budget)),
                ("kafka-perf", lambda out: mode_kafka_perf(bs, inp, ds, "kafka-perf", False, work)),
                ("kafka-perf-tuned", lambda out: mode_kafka_perf(bs, inp, ds, "kafka-perf-tuned", True, work)),
            ]
            for filt in ("diasource", "lightcurve", "columns", "whole", "diasource-sparse", "lightcurve-sparse",
                         "columns-sparse"):
                for side, src in (("old", old_src), ("new", None)):
                    if filt.startswith("columns") and side == "old":
                        continue  # alert.history is new
                    mode = f"{side}-{filt}"
                    plan.append((mode, (lambda mode, filt, src: lambda out: mode_runner(
                        bs, inp, out, ds, work, args.budget, mode, filt, [], src))(mode, filt, src)))
            plan.append(("new-diasource-eos", lambda out: mode_runner(
                bs, inp, out, ds, work, args.budget, "new-diasource-eos", "diasource", ["--exactly-once"], None)))
            plan.append(("new-diasource-untuned", lambda out: mode_runner(
                bs, inp, out, ds, work, args.budget, "new-diasource-untuned", "diasource", UNTUNED, None)))
            if args.modes:
                plan = [(m, fn) for m, fn in plan if m in args.modes.split(",")]
            runs: dict[str, list[tp.ModeResult]] = {}
            for rnd in range(repeat):
                for mode, fn in plan:
                    out = f"speed-{run_id}-{ds.name}-{mode}-{rnd}-out"
                    try:
                        r = fn(out)
                    except Exception as exc:  # noqa: BLE001 - record it, go on with the other modes
                        r = tp.ModeResult(ds.name, mode, ds.n, ok=False, note=f"{type(exc).__name__}: {exc}"[:300])
                    r.round = rnd
                    runs.setdefault(mode, []).append(r)
                    all_runs.append(r)
                    print(f"[{ds.name}] {mode:18s} {tp.fmt(r.steady_rate):>7} alerts/s {tp.fmt(r.alerts_per_cpu_s):>7}"
                          f" /CPU-s machine {tp.pct(r.machine_cpu_util):>3}% {r.processed:,}/{ds.n:,} "
                          f"{'' if r.ok else 'FAILED '}{r.note}", flush=True)
                    if mode.startswith(("old", "new")):
                        tp.delete_topics(bs, [out, f"{out}.deadletter"])
            best: list[tp.ModeResult] = []
            for mode, rs in runs.items():
                good = [r for r in rs if r.ok and r.steady_rate] or rs
                b = max(good, key=lambda r: r.steady_rate or 0)
                if len(rs) > 1:
                    b.note = (b.note + " best of " + ", ".join(tp.fmt(r.steady_rate) for r in rs)).strip()
                best.append(b)
            tuned = next((r.steady_rate for r in best if r.mode == "consume-tuned" and r.ok), None)
            for r in best:
                if tuned and r.steady_rate:
                    r.ratio_to_pass_through = r.steady_rate / tuned
            results += best
            tp.delete_topics(bs, [inp])
            ds.values = []
    except BaseException:
        failed = True
        raise
    finally:
        if broker is not None:
            broker.stop()
        if failed:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    cmd = " ".join(shlex.quote(a) for a in [".venv/bin/python", os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    meta = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick, "command": cmd,
            "machine": tp.machine_info(), "loadavg_start": loadavg_start,
            "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()), "duration_s": time.monotonic() - t_run,
            "budget_s": args.budget, "repeat": repeat, "old": old_rev,
            "datasets": [{"name": d.name, "label": d.label, "n": d.n, "mean_bytes": d.mean_bytes} for d in dsets]}
    (args.results_dir / "results").mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%d-%H%M%S")
    json_path = args.results_dir / "results" / f"runner-speed-{stamp}.json"
    json_path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results],
                                      "all_runs": [asdict(r) for r in all_runs]}, indent=2) + "\n")
    section = markdown(meta, results, dsets)
    section += f"\nJSON: `{os.path.relpath(json_path, args.results_dir)}`; plot: `results/runner-speed.png`.\n\n"
    with open(args.results_dir / "RESULTS.md", "a") as fh:
        fh.write("\n" + section)
    plot(results, args.results_dir / "results" / "runner-speed.png",
         f"runner speed, {meta['date']} ({meta['machine']['nproc']} cores, shared; one broker)")
    print(section)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
