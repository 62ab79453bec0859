#!/usr/bin/env python
"""Where a runner's CPU goes, per thread: the profile behind the missed targets of issue #13.

Run from the repository root with the project venv::

    .venv/bin/python bench/thread_profile.py                       # both datasets, three filters
    .venv/bin/python bench/thread_profile.py --filters lightcurve-sparse --datasets history-4

For each dataset (as ``runner_speed.py``: ``real-20`` replicated to 10,000 alerts, ``history-4`` to
2,000) one input topic is produced on a local broker; then, per filter, one ``alertfilter run``
reads all of it (``--exit-when-idle``) while every thread's CPU time is sampled from
``/proc/<pid>/task/<tid>/stat`` (kept at its last value, as threads end with the process). The
result is CPU microseconds per alert, grouped: the runner's Python threads (the loop, and the metrics server), its
librdkafka threads (``rdk:*``: fetch, decompression, produce), its other threads (metrics server),
the filter process (decoding and the author's function), and the broker JVM over the same
window. Printed as a Markdown table, also written to ``bench/results/thread-profile-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner_speed as rs  # noqa: E402
import throughput as tp  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by ``<tid>:<name>``; empty once the process is gone."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[f"{tid}:{name}"] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def group(name: str, is_filter: bool) -> str:
    if is_filter:
        return "filter process"
    thread = name.split(":", 1)[1]
    if thread.startswith("rdk:"):
        return "librdkafka threads"
    if thread.startswith(("python", "alertfilter")):
        return "runner Python threads"
    return "runner, other threads"


def profile(bs: str, inp: str, ds: tp.Dataset, work: Path, filt: str) -> dict[str, float]:
    """CPU microseconds per alert by group, for one ``alertfilter run`` over the whole topic."""
    out = f"profile-{uuid.uuid4().hex[:6]}-out"
    tp.ensure_topics(bs, {out: 1, f"{out}.deadletter": 1})
    flt = work / f"{filt}.py"
    flt.write_text(rs.FILTERS[filt])
    assert ds.schema_dir is not None
    args = [sys.executable, "-m", "alertfilter", "run", "--bootstrap-servers", bs, "--input", inp, "--output", out,
            "--filter", str(flt), "--schema-dir", str(ds.schema_dir), "--group", f"profile-{uuid.uuid4().hex[:8]}",
            "--decoder", "cavro", "--no-visit-cap", "--exit-when-idle", "2", "--metrics-port", "-1",
            "--visit-field", ds.visit_field, "--id-field", ds.id_field, "--fields", "auto"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
    broker0 = tp.cpu_seconds(tp.BROKER_PID) if tp.BROKER_PID else None
    last: dict[str, tuple[str, float]] = {}
    log = open(work / f"{filt}-{ds.name}.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    broker1 = broker0
    while proc.poll() is None:
        pids = [proc.pid, *tp.descendants(proc.pid)]
        for pid in pids:
            for key, secs in thread_times(pid).items():
                last[f"{pid}/{key}"] = (group(key, pid != proc.pid), secs)
        broker1 = tp.cpu_seconds(tp.BROKER_PID) if tp.BROKER_PID else None
        time.sleep(0.1)
    log.close()
    sums: dict[str, float] = {}
    for grp, secs in last.values():
        sums[grp] = sums.get(grp, 0.0) + secs
    if broker0 is not None and broker1 is not None:
        sums["broker JVM"] = broker1 - broker0
    return {k: v / ds.n * 1e6 for k, v in sums.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--filters", default="diasource-sparse,lightcurve-sparse,diasource")
    p.add_argument("--datasets", default="real-20,history-4")
    args = p.parse_args(argv)
    from alertfilter_devstack.kafka import KafkaBroker

    work = Path(tempfile.mkdtemp(prefix="alertfilter-profile-"))
    broker = KafkaBroker(work / "kafka", heap="1g")
    broker.start()
    tp.BROKER_PID = broker.proc.pid if broker.proc else None
    rows: list[dict[str, object]] = []
    load0 = os.getloadavg()
    try:
        for ds in tp.datasets(False):
            if ds.name not in args.datasets.split(","):
                continue
            tp.prepare(ds, work)
            inp = f"profile-{uuid.uuid4().hex[:6]}-{ds.name}"
            tp.produce_input(broker.bootstrap, inp, ds)
            for filt in args.filters.split(","):
                per_alert = profile(broker.bootstrap, inp, ds, work, filt)
                rows.append({"dataset": ds.name, "filter": filt, "us_per_alert": per_alert})
                print(ds.name, filt, {k: round(v) for k, v in per_alert.items()}, flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)  # the broker's data: ~500 MB per dataset
    groups = ["runner Python threads", "librdkafka threads", "runner, other threads", "filter process", "broker JVM"]
    print(f"\nload average {load0} at start, {os.getloadavg()} at end\n")
    print("| dataset | filter | " + " | ".join(groups) + " | runner + filter total |")
    print("|---|---|" + "---:|" * (len(groups) + 1))
    for r in rows:
        us = r["us_per_alert"]
        assert isinstance(us, dict)
        total = sum(v for k, v in us.items() if k != "broker JVM")
        print(f"| {r['dataset']} | {r['filter']} | " + " | ".join(f"{us.get(g, 0):,.0f}" for g in groups)
              + f" | {total:,.0f} |")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d-%H%M%S")
    path = tp.BENCH / "results" / f"thread-profile-{stamp}.json"
    path.write_text(json.dumps({"date": stamp, "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                                "machine": tp.machine_info(), "rows": rows}, indent=2) + "\n")
    print(f"\nJSON: {os.path.relpath(path, tp.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
