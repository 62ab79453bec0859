"""Plot the newest operator-scale and visit-latency results as PNGs in bench/results/.

    .venv/bin/python bench/plot_results.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def newest(prefix: str) -> dict:
    files = sorted(RESULTS.glob(f"{prefix}-*.json"))
    if not files:
        raise SystemExit(f"no {prefix} results in {RESULTS}")
    return json.loads(files[-1].read_text())


def main() -> None:
    scale = newest("operator-scale")["results"]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    counts = [r["count"] for r in scale]
    ax1.plot(counts, [r["seconds"] for r in scale], "o-", label="time to reconcile (s)")
    ax1.set_xlabel("AlertFilters applied at once")
    ax1.set_ylabel("seconds")
    ax2 = ax1.twinx()
    ax2.plot(counts, [r["operator_peak_rss_mib"] for r in scale], "s--", color="tab:red", label="peak RSS (MiB)")
    ax2.set_ylabel("operator peak RSS (MiB)")
    ax1.set_title("Operator scale (real kube-apiserver, 2 cores)")
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    fig.tight_layout()
    fig.savefig(RESULTS / "operator-scale.png", dpi=100)

    lat = newest("visit-latency")["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = range(len(lat))
    for key, label in (("p50_s", "p50"), ("p98_s", "p98"), ("max_s", "max")):
        ax.bar([i + {"p50_s": -0.25, "p98_s": 0, "max_s": 0.25}[key] for i in x], [r[key] for r in lat], 0.25, label=label)
    ax.axhline(60, color="red", linestyle="--", label="requirement: 98 % within 60 s")
    ax.set_xticks(list(x), [f"visit {r['visit']}\n{r['alerts']:,} alerts" for r in lat])
    ax.set_ylabel("seconds after the visit's last alert")
    ax.set_title("Visit latency, 10 filters, local stack (2 cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "visit-latency.png", dpi=100)
    print("wrote", RESULTS / "operator-scale.png", RESULTS / "visit-latency.png")


if __name__ == "__main__":
    main()
