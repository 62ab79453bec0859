"""Builders of a FilterPool's lean stream: the lean ``KafkaTopic``, the lean producer's ``KafkaUser``
(least ACLs) and its ``Deployment`` (the runner image running ``alertfilter lean``), all in the
pool's Kafka namespace and owned by the pool (its owner labels: removed with it).

Pure functions: the pool's name, uid and typed spec in, manifest dict out.
"""

from __future__ import annotations

from typing import Any

from alertfilter.lean import DEFAULT_LEAN_MAX_MESSAGE_BYTES
from alertfilter.settings import runner_env as settings_env
from alertfilter_operator.models import FilterPoolSpec, pool_kafka_name
from alertfilter_operator.naming import METRICS_PORT, POOL_LABEL, common_labels, owner_labels
from alertfilter_operator.pool_models import lean_topic_of

from .refs import STRIMZI_API
from .runner import RUNNER_UID

#: The lean producer's resources: one process splicing in C; the density benchmark (bench/RESULTS.md,
#: 2026-12-03 19:42 UTC) measured 6 % of a core at Rubin's 256 alerts/s, so 200m covers a peak visit
#: at 4x the rate with room; its librdkafka queues hold at most 4 batches of full alerts. Per pool:
#: ``spec.lean.resources``.
DEFAULT_LEAN_RESOURCES = {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
#: The lean producer's component label (``app.kubernetes.io/component``).
LEAN_COMPONENT = "lean"


def lean_name(pool_name: str, spec: FilterPoolSpec) -> str:
    """Name of the lean producer's Deployment, KafkaUser (and its Secret, SCRAM user): ``<pool kafka>-lean``."""
    return f"{pool_kafka_name(pool_name, spec)}-lean"


def lean_group(pool_name: str, uid: str, spec: FilterPoolSpec) -> str:
    """The lean producer's consumer group on the full stream: ``<pool kafka>-lean.<pool uid>``. The
    uid is part of it: a pool deleted and created again (its lean topic with it) copies the full
    stream afresh, never from the old producer's offsets."""
    return f"{lean_name(pool_name, spec)}.{uid}"


def lean_topic_resource(pool_name: str, spec: FilterPoolSpec) -> str:
    """Name of the lean topic's KafkaTopic: ``<pool kafka>-lean-topic``."""
    return f"{lean_name(pool_name, spec)}-topic"


def _labels(pool_name: str, uid: str, cluster: str | None = None) -> dict[str, str]:
    labels = {
        **common_labels(LEAN_COMPONENT, pool_name),
        **owner_labels("FilterPool", None, pool_name, uid),
        POOL_LABEL: pool_name,
    }
    if cluster:
        labels["strimzi.io/cluster"] = cluster
    return labels


def _topic(spec: FilterPoolSpec) -> str:
    topic = lean_topic_of(spec)
    if topic is None:
        raise ValueError("the pool's lean stream is disabled (spec.lean.enabled: false)")
    return topic


def build_lean_topic(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The lean topic's Strimzi KafkaTopic: ``spec.lean.partitions`` partitions (as many as the full
    stream), its retention, room for a record forwarded whole.

    Raises:
        ValueError: the lean stream is disabled.
    """
    cluster = pool_kafka_name(name, spec)
    replicas = min(3, spec.kafka.replicas)
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": {
            "name": lean_topic_resource(name, spec),
            "namespace": spec.kafka.namespace,
            "labels": _labels(name, uid, cluster),
        },
        "spec": {
            "topicName": _topic(spec),
            "partitions": spec.lean.partitions,
            "replicas": replicas,
            "config": {
                "retention.ms": spec.lean.retentionMs,
                "max.message.bytes": DEFAULT_LEAN_MAX_MESSAGE_BYTES,
                "min.insync.replicas": min(2, replicas),
                "cleanup.policy": "delete",
            },
        },
    }


def build_lean_user(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The lean producer's KafkaUser (SCRAM-SHA-512), ACLs exactly: Read and Describe on the mirrored
    full stream, Read on its own consumer group (:func:`lean_group`), Write and Describe on the lean topic.

    Raises:
        ValueError: the lean stream is disabled.
    """

    def acl(rtype: str, rname: str, ops: list[str]) -> dict[str, Any]:
        return {"resource": {"type": rtype, "name": rname, "patternType": "literal"}, "operations": ops}

    cluster = pool_kafka_name(name, spec)
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {
            "name": lean_name(name, spec),
            "namespace": spec.kafka.namespace,
            "labels": _labels(name, uid, cluster),
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    acl("topic", spec.mirror.topic, ["Read", "Describe"]),
                    acl("group", lean_group(name, uid, spec), ["Read"]),
                    acl("topic", _topic(spec), ["Write", "Describe"]),
                ],
            },
        },
    }


def lean_env(
    name: str,
    uid: str,
    spec: FilterPoolSpec,
    bootstrap: str,
    schema_registry: str | None = None,
    schema_dir: str | None = None,
) -> list[dict[str, Any]]:
    """The lean producer's settings as ``ALERTFILTER_*`` variables (``alertfilter lean --help``), with
    its SCRAM credentials from the Secret Strimzi makes for its KafkaUser (same namespace).

    Raises:
        ValueError: the lean stream is disabled. alertfilter.convert.SettingError: a value it would refuse.
    """
    values: dict[str, Any] = {
        "bootstrap-servers": bootstrap,
        "input": spec.mirror.topic,
        "group": lean_group(name, uid, spec),
        "metrics-port": METRICS_PORT,
        "log-format": "json",
    }
    if schema_registry:
        values["schema-registry"] = schema_registry
    elif schema_dir:
        values["schema-dir"] = schema_dir
    # lean-topic is the lean command's own option (not run's): rendered here as the table would
    env = {"ALERTFILTER_LEAN_TOPIC": _topic(spec), **settings_env(values)}
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    if spec.kafka.authentication == "scram-sha-512":
        out += [
            {"name": "ALERTFILTER_KAFKA_SECURITY_PROTOCOL", "value": "SASL_PLAINTEXT"},
            {"name": "ALERTFILTER_KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
            {"name": "ALERTFILTER_KAFKA_SASL_USERNAME", "value": lean_name(name, spec)},
            {
                "name": "ALERTFILTER_KAFKA_SASL_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": lean_name(name, spec), "key": "password"}},
            },
        ]
    return out


def build_lean_deployment(
    name: str,
    uid: str,
    spec: FilterPoolSpec,
    bootstrap: str,
    image: str,
    schema_registry: str | None = None,
    image_pull_policy: str = "IfNotPresent",
    schema_dir: str | None = None,
) -> dict[str, Any]:
    """The lean producer's Deployment: one pod of the runner image running ``alertfilter lean`` on
    the pool's nodes, restricted as a runner pod is, probed on ``/healthz`` and ``/readyz``,
    scraped on ``/metrics``. One replica: the producer is one consumer group member, and a second
    would only stand by (a replaced pod resumes from the committed offsets).

    Raises:
        ValueError: the lean stream is disabled.
    """
    labels = _labels(name, uid)
    selector = {"app.kubernetes.io/component": LEAN_COMPONENT, POOL_LABEL: name}
    resources = (
        spec.lean.resources.model_dump(exclude_none=True)
        if spec.lean.resources is not None
        else {k: dict(v) for k, v in DEFAULT_LEAN_RESOURCES.items()}
    )
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": lean_name(name, spec), "namespace": spec.kafka.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": {**labels, **selector},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 60,
                    "nodeSelector": dict(spec.nodeSelector),
                    "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "lean",
                            "image": image,
                            "imagePullPolicy": image_pull_policy,
                            "args": ["lean"],
                            "env": lean_env(name, uid, spec, bootstrap, schema_registry, schema_dir),
                            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                            "resources": resources,
                            "livenessProbe": probe,
                            "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}},
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


__all__ = [
    "DEFAULT_LEAN_RESOURCES",
    "LEAN_COMPONENT",
    "build_lean_deployment",
    "build_lean_topic",
    "build_lean_user",
    "lean_env",
    "lean_group",
    "lean_name",
    "lean_topic_resource",
]
