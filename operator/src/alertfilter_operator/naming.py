"""Names and labels of everything the operator creates."""

from __future__ import annotations

import hashlib

MANAGED_BY = "alert-filter-operator"
PART_OF = "alert-filter-operator"
#: Labels naming the owner of children that live outside the owner's namespace (no ownerReferences there).
OWNER_KIND = "alerts.lsst.io/owner-kind"
OWNER_NAMESPACE = "alerts.lsst.io/owner-namespace"
OWNER_NAME = "alerts.lsst.io/owner-name"
OWNER_UID = "alerts.lsst.io/owner-uid"
FILTER_LABEL = "alerts.lsst.io/filter"
POOL_LABEL = "alerts.lsst.io/pool"
SOURCE_HASH_ANNOTATION = "alerts.lsst.io/source-sha256"
#: The port of the runner's /metrics, /healthz and /readyz.
METRICS_PORT = 8080


def dns_name(*parts: str, max_len: int = 63) -> str:
    """Join ``parts`` with ``-`` into a DNS-1123 label; too long names keep a hash suffix to stay unique."""
    name = "-".join(p.strip("-").lower().replace(".", "-").replace("_", "-") for p in parts if p)
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: max_len - 9].rstrip('-')}-{digest}"


def runner_name(filter_name: str) -> str:
    """Name of a filter's same-namespace children (ConfigMap, Deployment, NetworkPolicy, Secret).

    At most 52 characters, so that the pods' generated names stay within 63.
    """
    return dns_name("af", filter_name, max_len=52)


def kafka_child_name(namespace: str, filter_name: str, suffix: str = "") -> str:
    """Name of a filter's children in the Kafka namespace (KafkaTopic, KafkaUser): unique across namespaces."""
    return dns_name("af", namespace, filter_name, suffix, max_len=63)


def output_topic(namespace: str, filter_name: str, override: str | None) -> str:
    """The output topic: ``spec.output.topic`` or ``<namespace>.<name>``."""
    return override or f"{namespace}.{filter_name}"


def dead_letter_topic(output: str) -> str:
    """The dead-letter topic of an output topic: ``<output>.deadletter``."""
    return f"{output}.deadletter"


def consumer_group(namespace: str, filter_name: str) -> str:
    """The filter's consumer group on the input topic."""
    return f"alertfilter.{namespace}.{filter_name}"


def common_labels(component: str, instance: str) -> dict[str, str]:
    """``app.kubernetes.io/*`` labels of an object the operator creates."""
    return {
        "app.kubernetes.io/name": "alertfilter-runner" if component == "filter-runner" else f"alertfilter-{component}",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def owner_labels(kind: str, namespace: str | None, name: str, uid: str) -> dict[str, str]:
    """Labels that name the owner of a child living outside the owner's namespace."""
    labels = {OWNER_KIND: kind, OWNER_NAME: name, OWNER_UID: uid}
    if namespace:
        labels[OWNER_NAMESPACE] = namespace
    return labels
