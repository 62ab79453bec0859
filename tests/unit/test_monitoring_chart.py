"""The chart's dashboard reads only what exists: the runner's and the lean producer's own metrics
(per filter and pool, by the labels the PodMonitor gives) and, for the mirror, the names Strimzi's
JMX exporter example gives MirrorMaker 2's; the runner pods carry the pool label."""

from __future__ import annotations

import json
import re
from pathlib import Path

from alertfilter.leanstream import LeanMetrics
from alertfilter.metrics import RunnerMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "alert-filter-operator" / "dashboards" / "alertfilter.json"


def exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def runner_series() -> set[str]:
    """The series names the runner's and the lean producer's registries expose (counters as
    ``_total``, histograms' ``_bucket``...)."""
    metrics, lean = RunnerMetrics(), LeanMetrics()
    metrics.lag.labels("alerts", "0").set(0)  # a labelled gauge has samples once a partition is assigned
    lean.lag.labels("alerts", "0").set(0)
    return {s.name for r in (metrics.registry, lean.registry) for m in r.collect() for s in m.samples}


def test_every_runner_query_names_a_series_the_runner_exposes():
    exposed = runner_series()
    for title, expr in exprs():
        for name in re.findall(r"\b(alertfilter_[a-z_]+)", expr):
            assert name in exposed, f"{title}: {name} is not a runner or lean producer metric"


def test_the_mirror_queries_use_the_names_strimzis_jmx_exporter_example_gives():
    # packaging/examples/metrics/kafka-mirror-maker-2-metrics.yaml (Strimzi): the rule
    # kafka.connect.mirror<type=MirrorSourceConnector, target, topic, partition><>(attr) -> kafka_connect_mirror_mirrorsourceconnector_$attr
    # and kafka.consumer<type=consumer-fetch-manager-metrics, client-id, topic, partition><>records-lag
    # -> kafka_consumer_fetch_manager_records_lag{clientid, topic, partition} (lowercased label names).
    mirror = " ".join(e for t, e in exprs() if t.startswith("Mirror"))
    assert "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max" in mirror
    assert "kafka_consumer_fetch_manager_records_lag" in mirror
    # Connect's storage topics, as the operator names them, are not the mirror's lag
    from alertfilter_operator.builders.pool import build_mirror_maker2
    from tests.unit.operator_tests.conftest import pool_spec

    target = build_mirror_maker2("pool-a", "uid", pool_spec())["spec"]["target"]
    storage = [target[k] for k in ("configStorageTopic", "offsetStorageTopic", "statusStorageTopic")]
    (pattern,) = re.findall(r'topic!~"([^"]+)"', mirror)
    assert all(re.fullmatch(pattern, t) for t in storage) and not re.fullmatch(pattern, "alerts")
    assert "kafka_connect_mirror_source_connector_" not in mirror  # not a name Strimzi's example exposes


def test_the_dashboard_covers_what_the_issue_asks_per_filter_and_per_pool():
    titles = " | ".join(t for t, _ in exprs()).lower()
    for words in ("consumed", "accepted", "capped", "dead letters", "lag", "filter time", "pool", "mirror", "lean"):
        assert words in titles
    assert "limits" in titles
    per_pool = [e for _, e in exprs() if "by (pool" in e]
    assert len(per_pool) >= 10
    runner = [e for _, e in exprs() if "alertfilter_" in e and "alertfilter_lean_" not in e]
    assert all('filter=~"$filter"' in e and 'pool=~"$pool"' in e for e in runner)
    lean = [e for _, e in exprs() if "alertfilter_lean_" in e]
    assert len(lean) >= 6 and all('pool=~"$pool"' in e and "by (pool" in e for e in lean)


def test_the_template_variables_are_the_podmonitors_labels():
    dash = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "namespace", "pool", "filter"]
    pm = (ROOT / "helm/alert-filter-operator/templates/monitoring-podmonitor.yaml").read_text()
    assert "targetLabel: filter" in pm and "targetLabel: pool" in pm
    assert "__meta_kubernetes_pod_label_app_kubernetes_io_name" in pm  # job: alertfilter-runner, alertfilter-lean


def test_runner_pods_carry_their_pools_label():
    from alertfilter_operator.builders.refs import PoolInfo
    from alertfilter_operator.builders.runner import build_deployment
    from alertfilter_operator.naming import FILTER_LABEL, POOL_LABEL
    from tests.unit.operator_tests.conftest import filter_ref, pool_spec

    dep = build_deployment(filter_ref(), PoolInfo.from_spec("pool-a", pool_spec()), "runner:1")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[POOL_LABEL] == "pool-a" and labels[FILTER_LABEL] == "bright"
    # what the PodMonitor selects (part-of, the pool label) and names the job by
    assert labels["app.kubernetes.io/part-of"] == "alert-filter-operator"
    assert labels["app.kubernetes.io/name"] == "alertfilter-runner"
    assert POOL_LABEL not in dep["spec"]["selector"]["matchLabels"]  # the selector never changes
