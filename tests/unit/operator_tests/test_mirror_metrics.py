"""A FilterPool's MirrorMaker 2 exports the metrics the dashboard's mirror panels read: the
KafkaMirrorMaker2 gets a JMX exporter ``metricsConfig``, its rules ConfigMap is applied and deleted
with the pool, and the rules turn the MBeans Kafka 4.1's connect-mirror registers into the series
names the dashboard queries (checked by applying them as the JMX exporter does)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from alertfilter_operator import pools
from alertfilter_operator.builders.mirror_metrics import (
    METRICS_KEY,
    build_mirror_metrics_configmap,
    exporter_config,
    mirror_metrics_name,
    with_metrics,
)
from alertfilter_operator.builders.pool import build_mirror_maker2
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.state import State

from .conftest import pool_spec
from .fake_kube import FakeKube

LOG = logging.getLogger("test")
DASHBOARD = Path(__file__).resolve().parents[3] / "helm" / "alert-filter-operator" / "dashboards" / "alertfilter.json"

#: (domain, key properties in registration order, attribute, value): what a mirror pod of pool-a
#: registers (Kafka 4.1.1: MirrorSourceMetrics tags source, target, topic, partition, in this
#: order; Connect's worker consumes its storage topics with consumers of its own).
MBEANS: list[tuple[str, list[tuple[str, str]], str, str]] = [
    *(
        (
            "kafka.connect.mirror",
            [
                ("type", "MirrorSourceConnector"),
                ("source", "central"),
                ("target", "pool-a-kafka"),
                ("topic", "alerts"),
                ("partition", "3"),
            ],
            attr,
            value,
        )
        for attr, value in [
            ("replication-latency-ms", "120.0"),
            ("replication-latency-ms-max", "250.0"),
            ("replication-latency-ms-avg", "90.0"),
            ("record-age-ms-max", "4000.0"),
            ("record-count", "1234.0"),
            ("byte-rate", "5.0E7"),
        ]
    ),
    *(
        (
            "kafka.consumer",
            [("type", "consumer-fetch-manager-metrics"), ("client-id", client), ("topic", topic), ("partition", "3")],
            attr,
            value,
        )
        for client, topic in [
            ("connector-consumer-MirrorSourceConnector-0", "alerts"),
            ("pool-a-kafka-mirror-offsets", "pool-a-kafka-mirror-offsets"),
        ]
        for attr, value in [("records-lag", "12.0"), ("records-lag-max", "40.0"), ("records-lead", "7.0")]
    ),
    (
        "kafka.consumer",
        [("type", "consumer-fetch-manager-metrics"), ("client-id", "connector-consumer-MirrorSourceConnector-0")],
        "records-lag-max",
        "40.0",
    ),
    ("kafka.connect", [("type", "connect-worker-metrics")], "connector-count", "3.0"),
    (
        "kafka.connect",
        [("type", "connector-task-metrics"), ("connector", "MirrorSourceConnector"), ("task", "0")],
        "status",
        "running",
    ),
]


def jmx_exporter(config: dict[str, Any], mbeans: list[tuple[str, list[tuple[str, str]], str, str]]) -> dict[str, Any]:
    """The series the JMX exporter makes of ``mbeans`` with ``config``: for each attribute, the first
    rule whose pattern occurs in ``domain<k=v, ...><>attribute: value`` names it ($N: the groups),
    lower-cased, with characters outside [a-zA-Z0-9:_] (and their runs) made one ``_``.

    Returns:
        {name: {sorted label tuple: value}}.
    """
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def safe(s: str) -> str:
        return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:_]", "_", s))

    for domain, props, attr, value in mbeans:
        text = f"{domain}<{', '.join(f'{k}={v}' for k, v in props)}><>{attr}: {value}"
        for rule in config["rules"]:
            m = re.match(f"^.*(?:{rule['pattern']}).*$", text)
            if not m:
                continue

            def sub(s: str, m: re.Match[str] = m) -> str:
                return re.sub(r"\$(\d+)", lambda g: m.group(int(g.group(1))), s)

            name = safe(sub(rule["name"]))
            name = name.lower() if config.get("lowercaseOutputName") else name
            labels = {
                (k.lower() if config.get("lowercaseOutputLabelNames") else k): sub(v)
                for k, v in rule.get("labels", {}).items()
            }
            number = float(rule["value"]) if "value" in rule else float(value)
            out.setdefault(name, {})[tuple(sorted(labels.items()))] = number
            break
    return out


@pytest.fixture
def series() -> dict[str, Any]:
    return jmx_exporter(json.loads(exporter_config()), MBEANS)


def test_the_mirror_exports_metrics_through_the_pools_configmap() -> None:
    spec = pool_spec()
    cm = build_mirror_metrics_configmap("pool-a", "uid-p", spec)
    mirror = with_metrics(build_mirror_maker2("pool-a", "uid-p", spec), "pool-a", spec)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap",
        "pool-a-kafka-mirror-metrics",
        "kafka-a",
    )
    assert mirror["metadata"]["namespace"] == cm["metadata"]["namespace"]  # Strimzi reads it beside the mirror
    assert mirror["spec"]["metricsConfig"] == {
        "type": "jmxPrometheusExporter",
        "valueFrom": {"configMapKeyRef": {"name": "pool-a-kafka-mirror-metrics", "key": METRICS_KEY}},
    }
    assert set(cm["data"]) == {METRICS_KEY}
    labels = cm["metadata"]["labels"]
    assert (labels["alerts.lsst.io/owner-uid"], labels["alerts.lsst.io/pool"]) == ("uid-p", "pool-a")
    assert "metricsConfig" not in build_mirror_maker2("pool-a", "uid-p", spec)["spec"]  # with_metrics copies


def test_the_rules_give_the_mirror_panels_their_series(series: dict[str, Any]) -> None:
    latency = series["kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max"]
    labels = {"source": "central", "target": "pool-a-kafka", "topic": "alerts", "partition": "3"}
    assert latency == {tuple(sorted(labels.items())): 250.0}  # not the -ms or -ms-avg attribute's value
    assert series["kafka_connect_mirror_mirrorsourceconnector_record_age_ms_max"] == {
        tuple(sorted(labels.items())): 4000.0
    }
    lag = series["kafka_consumer_fetch_manager_records_lag"]
    assert lag[(("clientid", "connector-consumer-MirrorSourceConnector-0"), ("partition", "3"), ("topic", "alerts"))]
    assert set(lag.values()) == {12.0}  # records-lag-max has a name of its own
    worst = series["kafka_consumer_fetch_manager_records_lag_max"]
    assert worst[(("clientid", "connector-consumer-MirrorSourceConnector-0"),)] == 40.0
    status = series["kafka_connect_connector_status"]
    assert status == {(("connector", "MirrorSourceConnector"), ("status", "running"), ("task", "0")): 1.0}
    # no catch-all: Connect's worker metrics and unlisted attributes are not exported
    assert not any(n.startswith("kafka_connect_worker") for n in series)
    assert "kafka_consumer_fetch_manager_records_lead" not in series


def test_every_mirror_query_of_the_dashboard_names_a_series_the_rules_make(series: dict[str, Any]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] if p["type"] != "row" and "Mirror" in p["title"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(kafka_[a-z_]+)", e)}
    assert names and names <= set(series), names - set(series)
    # the lag panel keeps the source task's consumer and leaves out Connect's storage-topic consumer
    (pattern,) = re.findall(r'topic!~"([^"]+)"', " ".join(exprs))
    topics = {dict(k)["topic"] for k in series["kafka_consumer_fetch_manager_records_lag"]}
    assert {t for t in topics if not re.fullmatch(pattern, t)} == {"alerts"}


def test_a_pre_4_0_mbean_without_source_is_not_what_the_rules_expect() -> None:
    # Kafka 4.0 made the source tag mandatory; Strimzi's older example rule (target first) matches
    # nothing on 4.1, so a change of the rules must keep matching the 4.x form
    old = [(d, [p for p in props if p[0] != "source"], a, v) for d, props, a, v in MBEANS[:1]]
    assert jmx_exporter(json.loads(exporter_config()), old) == {}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka-a"}}])


def _pool() -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "FilterPool",
        "metadata": {"name": "pool-a", "uid": "uid-pool-a", "generation": 1},
        "spec": pool_spec().model_dump(by_alias=True),
    }


def test_the_metrics_configmap_is_applied_and_deleted_with_the_pool(kube: FakeKube) -> None:
    kube.put(_pool())
    state = State(kube, OperatorConfig(runner_image="runner:test"))
    pools.reconcile(state, _pool(), LOG, {})
    name = mirror_metrics_name("pool-a", pool_spec())
    assert kube.find("ConfigMap", name, "kafka-a") is not None
    mirror = kube.find("KafkaMirrorMaker2", "pool-a-kafka-mirror", "kafka-a") or {}
    assert mirror["spec"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]["name"] == name
    pools.delete(state, _pool(), LOG, {})
    assert kube.find("ConfigMap", name, "kafka-a") is None


def test_a_configmap_of_that_name_the_pool_does_not_own_is_left_alone(kube: FakeKube) -> None:
    kube.put(_pool())
    name = mirror_metrics_name("pool-a", pool_spec())
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "kafka-a"}}
    kube.put({**theirs, "data": {"k": "someone else's"}})
    state = State(kube, OperatorConfig(runner_image="runner:test"))
    pools.reconcile(state, _pool(), LOG, {})
    assert (kube.find("ConfigMap", name, "kafka-a") or {})["data"] == {"k": "someone else's"}
    mirror = kube.find("KafkaMirrorMaker2", "pool-a-kafka-mirror", "kafka-a") or {}
    assert "metricsConfig" not in mirror["spec"]  # the mirror still runs, without metrics
    (event,) = [e for e in kube.events() if e["reason"] == "MirrorMetricsConflict"]
    assert event["type"] == "Warning" and name in event["message"]
    pools.delete(state, _pool(), LOG, {})
    assert kube.find("ConfigMap", name, "kafka-a") is not None
