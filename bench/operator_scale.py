"""Operator scale: time and operator memory to reconcile N AlertFilters applied at once.

    .venv/bin/python bench/operator_scale.py [--counts 100 1000]

A fresh real control plane (etcd + kube-apiserver, no controllers) with the CRDs; one FilterPool
with room for every filter; the operator as a process; N AlertFilters applied in one `kubectl apply`
of a List. "Reconciled" = every filter has its Deployment and SourceValid=True with its pool in the
status. Memory = the operator's peak RSS (VmHWM). Results go to bench/results/operator-scale-<date>.json
and a table is appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(count: int, workdir: Path) -> dict:
    from alertfilter_devstack.controlplane import ControlPlane
    from alertfilter_devstack.crds import install_crds
    from tests.cluster.operator_harness import OperatorProcess, alertfilter, apply_json, make_pool

    with ControlPlane(workdir / f"cp-{count}") as cp:
        install_crds(cp)
        op = OperatorProcess(cp, workdir, ALERTFILTER_OPERATOR_WEBHOOK="off").start()
        try:
            # authentication none: no Strimzi runs here, so SCRAM users would never get their secret
            pool, _ = make_pool(cp, capacity=(max(count // 50, 1) + 1, 50), authentication="none")
            cp.kubectl("create", "namespace", "scale")
            rss_idle = op.rss_peak_kib()
            items = [alertfilter(f"f{i:04d}", pool=pool) for i in range(count)]
            t0 = time.monotonic()
            for k in range(0, count, 250):  # kubectl apply of very large Lists is slow client-side
                apply_json(cp, {"apiVersion": "v1", "kind": "List", "items": items[k:k + 250]}, "scale")
            t_applied = time.monotonic() - t0
            while True:
                afs = json.loads(cp.kubectl("get", "alertfilters", "-n", "scale", "-o", "json").stdout)["items"]
                done = sum(1 for a in afs if (a.get("status") or {}).get("pool") == pool and any(
                    c["type"] == "SourceValid" and c["status"] == "True" for c in a["status"].get("conditions", [])))
                deps = len(json.loads(cp.kubectl("get", "deployments", "-n", "scale", "-o", "json").stdout)["items"])
                if done == count and deps == count:
                    break
                if time.monotonic() - t0 > 1800:
                    raise RuntimeError(f"only {done}/{count} reconciled after 30 min")
                time.sleep(1)
            elapsed = time.monotonic() - t0
            return {"count": count, "seconds": round(elapsed, 1), "apply_seconds": round(t_applied, 1),
                    "per_second": round(count / elapsed, 1), "operator_peak_rss_mib": round(op.rss_peak_kib() / 1024, 1),
                    "operator_idle_rss_mib": round(rss_idle / 1024, 1)}
        finally:
            op.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.counts:
            r = run(n, Path(tmp))
            print(json.dumps(r), flush=True)
            results.append(r)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"operator-scale-{stamp}.json"
    machine = {"nproc": os.cpu_count(), "python": platform.python_version(), "date": stamp}
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    lines = [f"\n## Operator scale ({stamp})\n", f"Command: `.venv/bin/python bench/operator_scale.py --counts "
             f"{' '.join(map(str, args.counts))}`; {os.cpu_count()} cores; real kube-apiserver 1.34.4 + etcd 3.6.4, "
             "no controllers; webhook off; pool authentication none (no Strimzi here to create SCRAM secrets).\n", "| AlertFilters | reconciled in (s) | filters/s | operator peak RSS (MiB) | idle RSS (MiB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['count']} | {r['seconds']} | {r['per_second']} | {r['operator_peak_rss_mib']} | {r['operator_idle_rss_mib']} |"
              for r in results]
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
