"""The Prometheus metrics of a FilterPool's MirrorMaker 2: the ConfigMap of JMX exporter rules and
the ``metricsConfig`` that points the ``KafkaMirrorMaker2`` at it.

Strimzi runs the JMX Prometheus exporter agent in each mirror pod when ``spec.metricsConfig`` is
``jmxPrometheusExporter``; the pods then serve ``/metrics`` on port ``tcp-prometheus`` (9404), which
the chart's mirror PodMonitor scrapes. The rules keep only what the dashboard and an operator of
the mirror need, so a pool with many partitions does not flood Prometheus with Connect's hundreds
of worker metrics.

What Kafka 4.1's ``connect-mirror`` registers (the MBean key properties in this order; since Kafka
4.0 ``source`` is always there, so a rule written for ``type=MirrorSourceConnector, target=...``,
as Strimzi's older example has it, matches nothing):

- ``kafka.connect.mirror:type=MirrorSourceConnector,source=S,target=T,topic=X,partition=P``:
  ``record-count``, ``record-rate``, ``record-age-ms(-min|-max|-avg)``, ``byte-count``,
  ``byte-rate``, ``replication-latency-ms(-min|-max|-avg)``;
- the source task's consumer, ``kafka.consumer:type=consumer-fetch-manager-metrics,client-id=C``
  (``records-lag-max``...) and per partition ``...,topic=X,partition=P`` (``records-lag``...).

Pure functions: the pool's name, uid and typed spec in, manifest dict out.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from alertfilter_operator.models import FilterPoolSpec, pool_kafka_name
from alertfilter_operator.naming import POOL_LABEL, common_labels, owner_labels

#: The ConfigMap key holding the exporter's configuration (YAML; JSON is YAML).
METRICS_KEY = "metrics-config.yml"

_GAUGE = "GAUGE"

#: JMX exporter rules. Names and labels follow Strimzi's examples (``kafka_connect_mirror_
#: mirrorsourceconnector_<attribute>``, ``kafka_consumer_fetch_manager_<attribute>`` with clientid,
#: topic, partition), so dashboards written for Strimzi read them too. Each rule is matched against
#: ``domain<key=value, ...><>attribute: value`` (the exporter's form of an MBean attribute) anywhere
#: in it: each attribute ends at its ``:``, else ``records-lag`` would also take ``records-lag-max``.
JMX_RULES: list[dict[str, Any]] = [
    {
        # the mirror itself: how late and how old what it copies is, and how much it copies
        "pattern": (
            r"kafka.connect.mirror<type=MirrorSourceConnector, source=(.+), target=(.+), topic=(.+), "
            r"partition=([0-9]+)><>(record-count|record-rate|record-age-ms|record-age-ms-(?:min|max|avg)"
            r"|byte-count|byte-rate|replication-latency-ms|replication-latency-ms-(?:min|max|avg)):"
        ),
        "name": "kafka_connect_mirror_mirrorsourceconnector_$5",
        "labels": {"source": "$1", "target": "$2", "topic": "$3", "partition": "$4"},
        "help": "MirrorMaker 2 source connector: $5 of a mirrored partition",
        "type": _GAUGE,
    },
    {
        # the consumers' lag per partition: the source task's on the central topic (and Connect's
        # own on its storage topics, which the dashboard leaves out by topic)
        "pattern": (
            r"kafka.consumer<type=consumer-fetch-manager-metrics, client-id=(.+), topic=(.+), "
            r"partition=([0-9]+)><>(records-lag|records-lag-max|records-lag-avg|records-lead-min):"
        ),
        "name": "kafka_consumer_fetch_manager_$4",
        "labels": {"clientId": "$1", "topic": "$2", "partition": "$3"},
        "help": "Kafka consumer: $4 of a partition, in records",
        "type": _GAUGE,
    },
    {
        # a consumer's worst partition, and whether it fetches at all
        "pattern": (
            r"kafka.consumer<type=consumer-fetch-manager-metrics, client-id=([^,]+)>"
            r"<>(records-lag-max|records-consumed-total|bytes-consumed-total|fetch-total):"
        ),
        "name": "kafka_consumer_fetch_manager_$2",
        "labels": {"clientId": "$1"},
        "help": "Kafka consumer: $2",
        "type": _GAUGE,
    },
    {
        # what the mirror's producers write to the pool's Kafka, and their errors
        "pattern": r"kafka.producer<type=producer-metrics, client-id=([^,]+)><>(record-send-total|record-error-total):",
        "name": "kafka_producer_$2",
        "labels": {"clientId": "$1"},
        "help": "Kafka producer: $2",
        "type": "COUNTER",
    },
    {
        # a connector task that failed stops the mirror with the pod still running
        "pattern": r"kafka.connect<type=connector-task-metrics, connector=(.+), task=(.+)><>status: ([a-z-]+)",
        "name": "kafka_connect_connector_status",
        "value": 1,
        "labels": {"connector": "$1", "task": "$2", "status": "$3"},
        "help": "Kafka Connect: a connector task's status",
        "type": _GAUGE,
    },
]


def mirror_metrics_name(name: str, spec: FilterPoolSpec) -> str:
    """Name of the ConfigMap of the mirror's JMX exporter rules: ``<pool kafka>-mirror-metrics``."""
    return f"{pool_kafka_name(name, spec)}-mirror-metrics"


def metrics_config(name: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """A ``KafkaMirrorMaker2``'s ``spec.metricsConfig``: the JMX exporter, configured from the ConfigMap."""
    return {
        "type": "jmxPrometheusExporter",
        "valueFrom": {"configMapKeyRef": {"name": mirror_metrics_name(name, spec), "key": METRICS_KEY}},
    }


def exporter_config() -> str:
    """The JMX exporter's configuration (the ConfigMap's value): lower-case names and label names,
    :data:`JMX_RULES`, and nothing else exported (no catch-all rule)."""
    return json.dumps({"lowercaseOutputName": True, "lowercaseOutputLabelNames": True, "rules": JMX_RULES}, indent=2)


def build_mirror_metrics_configmap(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The ConfigMap, in the pool's Kafka namespace beside the ``KafkaMirrorMaker2``, owned by the
    FilterPool through its owner labels (ownerReferences cannot cross namespaces)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": mirror_metrics_name(name, spec),
            "namespace": spec.kafka.namespace,
            "labels": {
                **common_labels("mirror", name),
                **owner_labels("FilterPool", None, name, uid),
                POOL_LABEL: name,
            },
        },
        "data": {METRICS_KEY: exporter_config()},
    }


def with_metrics(mirror: dict[str, Any], name: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """A copy of the ``KafkaMirrorMaker2`` ``mirror`` (from ``build_mirror_maker2``) exporting its
    metrics (``spec.metricsConfig``)."""
    out = copy.deepcopy(mirror)
    out["spec"]["metricsConfig"] = metrics_config(name, spec)
    return out
