"""The chart's dashboard reads only what exists: the runner's own metrics (per filter and pool, by the
labels the PodMonitor gives) and, for the mirror, Strimzi's; the runner pods carry the pool label."""

from __future__ import annotations

import json
import re
from pathlib import Path

from alertfilter.metrics import RunnerMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "alert-filter-operator" / "dashboards" / "alertfilter.json"


def exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def runner_series() -> set[str]:
    """The series names the runner's registry exposes (counters as ``_total``, histograms' ``_bucket``...)."""
    metrics = RunnerMetrics()
    metrics.lag.labels("alerts", "0").set(0)  # a labelled gauge has samples once a partition is assigned
    return {s.name for m in metrics.registry.collect() for s in m.samples}


def test_every_runner_query_names_a_series_the_runner_exposes():
    exposed = runner_series()
    for title, expr in exprs():
        for name in re.findall(r"\b(alertfilter_[a-z_]+)", expr):
            assert name in exposed, f"{title}: {name} is not a runner metric"


def test_the_dashboard_covers_what_the_issue_asks_per_filter_and_per_pool():
    titles = " | ".join(t for t, _ in exprs()).lower()
    for words in ("consumed", "accepted", "capped", "dead letters", "lag", "filter time", "pool", "mirror"):
        assert words in titles
    per_pool = [e for _, e in exprs() if "by (pool" in e]
    assert len(per_pool) >= 4
    runner = [e for _, e in exprs() if "alertfilter_" in e]
    assert all('filter=~"$filter"' in e and 'pool=~"$pool"' in e for e in runner)


def test_the_template_variables_are_the_podmonitors_labels():
    dash = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "namespace", "pool", "filter"]
    pm = (ROOT / "helm/alert-filter-operator/templates/monitoring-podmonitor.yaml").read_text()
    assert "targetLabel: filter" in pm and "targetLabel: pool" in pm


def test_runner_pods_carry_their_pools_label():
    from alertfilter_operator.builders.refs import PoolInfo
    from alertfilter_operator.builders.runner import build_deployment
    from alertfilter_operator.naming import FILTER_LABEL, POOL_LABEL
    from tests.unit.operator_tests.conftest import filter_ref, pool_spec

    dep = build_deployment(filter_ref(), PoolInfo.from_spec("pool-a", pool_spec()), "runner:1")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[POOL_LABEL] == "pool-a" and labels[FILTER_LABEL] == "bright"
    assert labels["app.kubernetes.io/component"] == "filter-runner"  # what the PodMonitor selects
    assert POOL_LABEL not in dep["spec"]["selector"]["matchLabels"]  # the selector never changes
