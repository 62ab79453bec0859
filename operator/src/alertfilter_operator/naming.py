"""Names and labels of everything the operator creates."""

from __future__ import annotations

import hashlib
import re

from alertfilter.candidates import cap_group

MANAGED_BY = "alert-filter-operator"
PART_OF = "alert-filter-operator"
#: Labels naming the owner of children that live outside the owner's namespace (no ownerReferences there).
OWNER_KIND = "alerts.lsst.io/owner-kind"
OWNER_NAMESPACE = "alerts.lsst.io/owner-namespace"
OWNER_NAME = "alerts.lsst.io/owner-name"
OWNER_UID = "alerts.lsst.io/owner-uid"
FILTER_LABEL = "alerts.lsst.io/filter"
POOL_LABEL = "alerts.lsst.io/pool"
#: Label of a filter's KafkaTopic: :func:`topic_key` of its topic, to find a colliding one by selector.
TOPIC_KEY_LABEL = "alerts.lsst.io/topic-key"
SOURCE_HASH_ANNOTATION = "alerts.lsst.io/source-sha256"
#: Suffix of a dead-letter topic's name after its output topic's.
DEAD_LETTER_SUFFIX = ".deadletter"
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
    """Name of a filter's same-namespace children (ConfigMap, Deployment, NetworkPolicy): ``af-<name>``.

    At most 52 characters, so that the pods' generated names stay within 63. A filter's name is a
    DNS label (the CRD's ``metadata.name`` rule), so distinct names give distinct children except
    past 49 characters, where a hash suffix is kept; the owner check of every write turns a hash
    collision into a ``NameConflict`` rather than a takeover.
    """
    return dns_name("af", filter_name, max_len=52)


def credentials_secret_name(filter_name: str) -> str:
    """The Secret in the filter's namespace holding its runner's Kafka password: ``af-<name>-kafka``."""
    return f"{runner_name(filter_name)}-kafka"


def kafka_user_name(namespace: str, filter_name: str) -> str:
    """The filter's KafkaUser (and SCRAM user name) in its pool's Kafka namespace: ``af.<namespace>.<name>``.

    Collision-free across namespaces: a namespace and a filter's name are DNS labels, which hold no
    ``.``, so the dots split the parts again.
    """
    return f"af.{namespace}.{filter_name}"


def topic_resource_name(namespace: str, filter_name: str, role: str) -> str:
    """Name of a filter's KafkaTopic resource: ``af.<namespace>.<name>.<role>`` (``output`` or
    ``deadletter``). Collision-free for the reason :func:`kafka_user_name` is."""
    return f"af.{namespace}.{filter_name}.{role}"


def candidates_topic(namespace: str, filter_name: str) -> str:
    """The filter's candidates topic, and its KafkaTopic's name: ``af.<namespace>.<name>.candidates``:
    the accepted alerts of every replica, keyed by visit, on their way to the cap stage that keeps the
    per-visit cap exact (``alertfilter.capstage``). Collision-free for the reason :func:`kafka_user_name`
    is; the contract refuses it as anyone's output topic (``contract.CANDIDATES_KEY``)."""
    return topic_resource_name(namespace, filter_name, "candidates")


def cap_stage_group(group: str) -> str:
    """The cap stage's consumer group on the candidates topic: ``<group>.cap`` (the runner derives
    the same name: ``alertfilter.candidates.cap_group``)."""
    return cap_group(group)


def output_topic(namespace: str, filter_name: str, override: str | None) -> str:
    """The output topic: ``spec.output.topic`` or ``<namespace>.<name>``."""
    return override or f"{namespace}.{filter_name}"


def dead_letter_topic(output: str) -> str:
    """The dead-letter topic of an output topic: ``<output>.deadletter``."""
    return f"{output}{DEAD_LETTER_SUFFIX}"


def consumer_group(namespace: str, filter_name: str, uid: str) -> str:
    """The filter's consumer group on the input topic: ``alertfilter.<namespace>.<name>.<uid>``.

    The object's uid is part of it: a filter deleted and created again under the same name is a new
    filter, and must not resume from the old one's committed offsets and per-visit cap state.
    """
    return f"alertfilter.{namespace}.{filter_name}.{uid}"


def transactional_id_prefix(group: str) -> str:
    """Prefix of the runners' transactional ids (the runner appends its host name): ``alertfilter-<group>``."""
    return f"alertfilter-{group}"


def topic_key(topic: str) -> str:
    """A label value identifying ``topic`` as the contract compares names (``.`` and ``_`` alike, case
    folded; ``contract.collision_key``): a sha256 prefix."""
    return hashlib.sha256(topic.replace(".", "_").lower().encode()).hexdigest()[:40]


def is_dns_subdomain(text: str) -> bool:
    """Whether ``text`` can be an object's name (RFC 1123 subdomain: lower case, digits, ``-``, ``.``)."""
    return len(text) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", text) is not None


def label_value(text: str) -> str:
    """``text`` as a label value (at most 63 characters; a longer one keeps a hash suffix)."""
    if len(text) <= 63:
        return text
    return f"{text[:54]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def common_labels(component: str, instance: str) -> dict[str, str]:
    """``app.kubernetes.io/*`` labels of an object the operator creates."""
    return {
        "app.kubernetes.io/name": "alertfilter-runner" if component == "filter-runner" else f"alertfilter-{component}",
        "app.kubernetes.io/instance": label_value(instance),
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
