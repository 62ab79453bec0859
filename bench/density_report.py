"""The density benchmark's report: a line per step while it runs, then a section of ``RESULTS.md``,
the JSON beside it and a plot (``bench/density.py`` calls :func:`write`)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import density_model as dm

KIND_LETTER = {"diasource": "d", "lightcurve": "l", "cutout": "c"}


def sec(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "never" if math.isinf(x) else f"{x:.1f}"


def num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def worst(visits: list[dict[str, Any]], peak: bool) -> dict[str, Any] | None:
    """The visit with the largest p98 among the nominal (or the peak) visits."""
    vs = [v for v in visits if v["peak"] == peak]
    return max(vs, key=lambda v: v["p98_s"]) if vs else None


def runner_stats(step: dict[str, Any], kind: str | None = None) -> dict[str, float | None]:
    """Mean and max CPU (millicores at the nominal rate: CPU per alert over the step x alerts/s) and
    PSS (MiB) of the step's runners (of ``kind``)."""
    rs = [r for r in step["runners"] if kind is None or r["kind"] == kind]
    cpu = [r["m_at_nominal"] for r in rs if r["m_at_nominal"] is not None]
    pss = [r["pss_mib"] for r in rs if r["pss_mib"]]
    return {
        "cpu_mean": sum(cpu) / len(cpu) if cpu else None,
        "cpu_max": max(cpu, default=None),
        "pss_mean": sum(pss) / len(pss) if pss else None,
        "pss_max": max(pss, default=None),
        "hwm_max": max((r["peak_rss_mib"] for r in rs), default=None),
        "runners": len(rs),
    }


def trio(v: dict[str, Any] | None) -> str:
    """``p50 / p98 / max`` of a visit row."""
    return f"{sec(v['p50_s'])} / {sec(v['p98_s'])} / {sec(v['max_s'])}" if v else "-"


def mix(step: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for r in step["runners"]:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    return " ".join(f"{c}{KIND_LETTER.get(k, k)}" for k, c in counts.items())


def step_line(s: dict[str, Any]) -> str:
    """One line per finished step, for the console."""
    w, pk, rs = worst(s["visits"], False), worst(s["visits"], True), runner_stats(s)
    return (
        f"[{s['mode']}] N={s['n']}: {'PASS' if s['passed'] else 'FAIL'} nominal p98 "
        f"{sec(w['p98_s']) if w else '-'} s (p50 {sec(w['p50_s']) if w else '-'}), peak p98 "
        f"{sec(pk['p98_s']) if pk else '-'} s; runner {num(rs['cpu_mean'])} m, {num(rs['pss_max'])} MiB; "
        f"pool broker {num(100 * (s['cores_at_nominal'].get('pool broker') or 0))} %, "
        f"{num(s['pool_sent_mb_s_at_nominal'], 1)} MB/s sent (at the nominal rate); feed "
        f"{num(s.get('feed_rate'))} alerts/s; {s['duration_s']:.0f} s; {s['note']}"
    )


def summary(steps: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """N_max per mode, the runner sizing of its largest passing step, and the per-node estimates."""
    out: dict[str, Any] = {}
    for mode in dict.fromkeys(s["mode"] for s in steps):
        ms = [s for s in steps if s["mode"] == mode]
        best, first_fail = dm.n_max({s["n"]: s["passed"] for s in ms})
        ref = next((s for s in ms if s["n"] == best), None)
        rs = runner_stats(ref) if ref else {}
        out[mode] = {
            "n_max": best,
            "first_fail": first_fail,
            "runner": rs,
            "by_kind": {k: runner_stats(ref, k) for k in KIND_LETTER} if ref else {},
            "per_node": dm.per_node(best, cores, rs.get("cpu_mean"), rs.get("pss_max")),
        }
    if "full" in out and "lean" in out and out["full"]["n_max"]:
        out["lean_over_full"] = out["lean"]["n_max"] / out["full"]["n_max"]
    return out


def stack_table(steps: list[dict[str, Any]]) -> list[str]:
    """The stack's CPU per step, and what the lean stream weighs against the full one."""
    out = [
        "",
        (
            "The stack's CPU at the nominal rate (CPU-s per alert fed over the step x alerts/s), % of one core; "
            "feed: this script's producer; machine: every process's, ours or not:"
        ),
        "",
        (
            "| mode | N | central broker | MirrorMaker 2 | pool broker | lean producer | feed | runners, all | machine "
            "| pool broker received, GB (step) | lean / full bytes |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        pct = {k: num(100 * v) if v is not None else "-" for k, v in s["cores_at_nominal"].items()}
        runners_all = sum(r["m_at_nominal"] or 0 for r in s["runners"]) / 1000
        lean = s.get("lean_totals") or {}
        ratio = f"{lean['bytes_out'] / lean['bytes_in']:.3f}" if lean.get("bytes_in") else "-"
        out.append(
            f"| {s['mode']} | {s['n']} | {pct.get('central broker', '-')} | {pct.get('MirrorMaker 2', '-')} | "
            f"{pct.get('pool broker', '-')} | {pct.get('lean producer', '-')} | {pct.get('bench', '-')} | "
            f"{num(100 * runners_all)} | {pct.get('machine', '-')} | {num(s.get('pool_received_gb'), 1)} | {ratio} |"
        )
    return out


def markdown(meta: dict[str, Any], steps: list[dict[str, Any]], summ: dict[str, Any], json_rel: str) -> str:
    m, a = meta["machine"], meta["args"]
    out = [
        f"## {meta['date']} — density: filter runners per machine (issue #14){' (quick)' if meta['quick'] else ''}",
        "",
        f"- command: `{meta['command']}` (from `/work/main`)",
        (
            f"- machine: {m['nproc']} cores ({m['cpu_model']}), kernel {m['kernel']}; load average "
            f"{meta['loadavg_start']} at start (the load of what else ran: the run's own comes after), "
            f"{meta['loadavg_end']} at end."
        ),
        (
            f"- software: Python {m['python']}, cavro {m['cavro']}, confluent-kafka {m['confluent_kafka']} (librdkafka "
            f"{m['librdkafka']}), Apache Kafka {m['kafka']}; alertfilter at {m['git']}; run time "
            f"{meta['duration_s'] / 60:.1f} min"
        ),
        (
            f"- stack: a central and a pool broker (KRaft, one node each) and MirrorMaker 2 between them, with the "
            f"local stack's settings; {a['partitions']} partition(s); the central broker keeps "
            f"{meta.get('central_retention_s', '-')} s of data (in memory: the shared disk was short), the pool broker "
            f"{meta['retention_s']} s (in memory too)"
        ),
        (
            f"- feed: {a['visits']} visits of {a['per_visit']:,} alerts every {a['cadence']:.0f} s, then one peak "
            f"visit of {a['peak']:,}; the {meta['distinct_alerts']} shared real alerts (real-20 and history-4, one "
            f"in six with a long history; mean {meta['mean_bytes']:,} B) with fresh ids"
        ),
        (
            f"- runners: `alertfilter run` processes (each with its filter process), cavro, `--fields auto`, no visit "
            f"cap, at-least-once; filters repeat `{a['mix']}` (d = diaSource cut, l = light curve, c = reads "
            "`cutoutDifference`), each accepting a known 1 % of the alerts"
        ),
        (
            "- latency: output record time (the pool broker's append time) minus the time the visit's last alert was acknowledged; an accepted alert "
            'that never arrived counts as infinitely late ("never"). A step passes when every nominal visit\'s p98 '
            f"is under 60 s and the feed held the cadence (each nominal visit produced within {a['cadence']:g} s, "
            f"started at most {dm.CADENCE_SLACK_S:g} s late: a slowed stream is not the nominal rate)."
        ),
        "",
        (
            "| mode | N | filters | nominal p50 / p98 / max, s (worst visit) | peak p50 / p98 / max, s | passes | "
            "runner CPU at the nominal rate, m (mean / max) | runner PSS, MiB (mean / max) | pool broker CPU at "
            "the nominal rate, % | pool broker sent at the nominal rate, MB/s | feed, alerts/s | note |"
        ),
        "|---|---:|---|---|---|---|---|---|---:|---:|---:|---|",
    ]
    for s in steps:
        w, pk, rs = worst(s["visits"], False), worst(s["visits"], True), runner_stats(s)
        cpu = s["cores_at_nominal"]
        out.append(
            f"| {s['mode']} | {s['n']} | {mix(s)} | {trio(w)} | {trio(pk)} | {'yes' if s['passed'] else 'no'} | "
            f"{num(rs['cpu_mean'])} / {num(rs['cpu_max'])} | {num(rs['pss_mean'])} / {num(rs['pss_max'])} | "
            f"{num(100 * cpu['pool broker'] if cpu.get('pool broker') is not None else None)} | "
            f"{num(s['pool_sent_mb_s_at_nominal'], 1)} | {num(s.get('feed_rate'))} | {s['note']} |"
        )
    out += stack_table(steps)
    out += [
        "",
        "Per visit (all filters of the step):",
        "",
        (
            "| mode | N | visit | alerts | started late, s | produced in, s | accepted / expected | p50, s | p98, s "
            "| max, s | within 60 s |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        for v in s["visits"]:
            out.append(
                f"| {s['mode']} | {s['n']} | {v['visit']}{' (peak)' if v['peak'] else ''} | {v['alerts']:,} | "
                f"{v.get('started_late_s', '-')} | {v['produce_s']} | {v['arrived']:,} / {v['expected']:,} | {sec(v['p50_s'])} | "
                f"{sec(v['p98_s'])} | {sec(v['max_s'])} | {100 * v['within_limit']:.1f} % |"
            )
    out += ["", "Summary:", ""]
    for mode, x in summ.items():
        if not isinstance(x, dict):
            continue
        pn = x["per_node"]
        out.append(
            f"- **{mode} stream: N_max = {x['n_max']}** on this machine (p98 < 60 s on every nominal visit and the "
            "cadence held; "
            f"first failing N: {x['first_fail'] or 'none tried'}). Per runner at that N: "
            f"{num(x['runner'].get('cpu_mean'))} millicores at the nominal rate (max "
            f"{num(x['runner'].get('cpu_max'))}), PSS up to {num(x['runner'].get('pss_max'))} MiB. Per "
            f"m4.4xlarge: {num(pn['linear'])} scaling this machine's N_max by 16 vCPU / {m['nproc']} cores "
            f"(everything here, brokers and MirrorMaker 2 included, counted as runner load); "
            f"{num(pn['requests'])} from the runner's own CPU and memory (15 vCPU, 60 GiB left for runners: "
            f"{num(pn['by_cpu'])} by CPU, {num(pn['by_memory'])} by memory)."
        )
    if "lean_over_full" in summ:
        out.append(f"- lean / full N_max: {summ['lean_over_full']:.1f}x (target: >= 4x, and lean >= 25).")
    out += ["", f"JSON: `{json_rel}`; plot: `results/density.png`.", ""]
    return "\n".join(out)


def plot(steps: list[dict[str, Any]], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install -r bench/requirements.txt)", file=sys.stderr)  # noqa: T201
        return
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for mode, colour in (("full", "#d62728"), ("lean", "#1f77b4")):
        ms = sorted((s for s in steps if s["mode"] == mode), key=lambda s: s["n"])
        if not ms:
            continue
        ns = [s["n"] for s in ms]
        p98 = [min(w["p98_s"], 900) if (w := worst(s["visits"], False)) else math.nan for s in ms]
        axes[0].plot(ns, p98, "o-", color=colour, label=f"{mode}: worst nominal visit")
        pk = [min(w["p98_s"], 900) if (w := worst(s["visits"], True)) else math.nan for s in ms]
        axes[0].plot(ns, pk, "x--", color=colour, label=f"{mode}: peak visit")
        axes[1].plot(ns, [runner_stats(s)["cpu_mean"] or math.nan for s in ms], "o-", color=colour, label=mode)
        axes[2].plot(ns, [s["pool_sent_mb_s_at_nominal"] for s in ms], "o-", color=colour, label=mode)
    axes[0].axhline(60, color="grey", lw=1, ls=":")
    axes[0].set(
        xlabel="runners N",
        ylabel="p98 latency, s (never arrived: 900)",
        yscale="log",
        title="latency after the visit's last alert",
    )
    axes[1].set(xlabel="runners N", ylabel="millicores per runner", title="runner CPU at the nominal rate")
    axes[2].set(xlabel="runners N", ylabel="MB/s", title="pool broker: bytes sent at the nominal rate")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(meta: dict[str, Any], steps: list[dict[str, Any]], results_dir: Path) -> None:
    """Append the section to ``RESULTS.md``, write the JSON and the plot, print the section."""
    (results_dir / "results").mkdir(parents=True, exist_ok=True)
    stamp = meta["date"].replace(" UTC", "").replace(" ", "-").replace(":", "")
    json_path = results_dir / "results" / f"density-{stamp}.json"
    summ = summary(steps, int(meta["machine"]["nproc"] or 2))
    json_path.write_text(json.dumps({"meta": meta, "summary": summ, "steps": steps}, indent=1, default=str) + "\n")
    section = markdown(meta, steps, summ, os.path.relpath(json_path, results_dir))
    with open(results_dir / "RESULTS.md", "a") as fh:
        fh.write("\n" + section)
    plot(
        steps,
        results_dir / "results" / "density.png",
        f"density, {meta['date']} ({meta['machine']['nproc']} cores, shared)",
    )
    print(section)  # noqa: T201


def rejudge(steps: list[dict[str, Any]], cadence: float) -> None:
    """Judge recorded ``steps`` again with the current criterion (p98 and the cadence held), in place:
    a run recorded before the cadence was part of it keeps its figures, with its verdicts corrected."""
    for s in steps:
        nominal = [v for v in s["visits"] if not v["peak"]]
        latency_ok = bool(nominal) and all(v["ok"] for v in nominal) and bool(s.get("latency_passed", s["passed"]))
        s["latency_passed"] = latency_ok
        slow = dm.cadence_problem(s["visits"], cadence)
        if slow and slow not in s["note"]:
            s["note"] = "; ".join(x for x in (s["note"], slow) if x)
        s["cadence_held"] = slow is None
        s["passed"] = latency_ok and slow is None


if __name__ == "__main__":
    # .venv/bin/python bench/density_report.py results/density-<stamp>.json: the section, JSON and plot again
    path = Path(sys.argv[1])
    data = json.loads(path.read_text())
    rejudge(data["steps"], float(data["meta"]["args"]["cadence"]))
    data["meta"]["rejudged"] = "verdicts with the cadence criterion (density_report.rejudge)"
    write(data["meta"], data["steps"], Path(__file__).resolve().parent)
