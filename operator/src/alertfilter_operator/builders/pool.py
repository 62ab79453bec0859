"""Builders of a FilterPool's children: the pool-local Strimzi ``Kafka`` and its ``KafkaNodePool``,
the mirror's ``KafkaUser`` and the ``KafkaMirrorMaker2`` that copies the full stream in.

Pure functions: the pool's name, uid and typed spec in, manifest dict out.
"""

from __future__ import annotations

from typing import Any

from alertfilter_operator.models import FilterPoolSpec, pool_kafka_name
from alertfilter_operator.naming import POOL_LABEL, common_labels, owner_labels

from .refs import KAFKA_PORT, STRIMZI_API


def _pool_labels(pool_name: str, uid: str, component: str, cluster: str | None = None) -> dict[str, str]:
    labels = {
        **common_labels(component, pool_name),
        **owner_labels("FilterPool", None, pool_name, uid),
        POOL_LABEL: pool_name,
    }
    if cluster:
        labels["strimzi.io/cluster"] = cluster
    return labels


def _node_affinity(node_selector: dict[str, str]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": k, "operator": "In", "values": [v]} for k, v in sorted(node_selector.items())
                        ]
                    }
                ]
            }
        }
    }


def build_pool_kafka(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The pool-local Strimzi ``Kafka`` (KRaft; brokers come from the KafkaNodePool)."""
    cluster = pool_kafka_name(name, spec)
    r = spec.kafka.replicas
    listener: dict[str, Any] = {"name": "plain", "port": KAFKA_PORT, "type": "internal", "tls": False}
    kafka: dict[str, Any] = {
        "listeners": [listener],
        "config": {
            "offsets.topic.replication.factor": min(3, r),
            "transaction.state.log.replication.factor": min(3, r),
            "transaction.state.log.min.isr": min(2, r),
            "default.replication.factor": min(3, r),
            "min.insync.replicas": min(2, r),
            # a forwarded alert keeps its original bytes: topics must take the largest alert
            "message.max.bytes": 10 * 1024 * 1024,
            "replica.fetch.max.bytes": 10 * 1024 * 1024,
        },
    }
    if spec.kafka.authentication == "scram-sha-512":
        listener["authentication"] = {"type": "scram-sha-512"}
        kafka["authorization"] = {"type": "simple"}
    return {
        "apiVersion": STRIMZI_API,
        "kind": "Kafka",
        "metadata": {
            "name": cluster,
            "namespace": spec.kafka.namespace,
            "labels": _pool_labels(name, uid, "pool-kafka"),
        },
        "spec": {"kafka": kafka, "entityOperator": {"topicOperator": {}, "userOperator": {}}},
    }


def build_pool_node_pool(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The ``KafkaNodePool`` of the pool-local Kafka: combined controller+broker nodes pinned to the pool's nodes."""
    cluster = pool_kafka_name(name, spec)
    st = spec.kafka.storage
    if st.type == "ephemeral":
        storage: dict[str, Any] = {"type": "ephemeral"}
    else:
        volume: dict[str, Any] = {
            "id": 0,
            "type": "persistent-claim",
            "size": st.size,
            "deleteClaim": st.deleteClaim,
            "kraftMetadata": "shared",
        }
        if st.storageClass:
            volume["class"] = st.storageClass
        storage = {"type": "jbod", "volumes": [volume]}
    body: dict[str, Any] = {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaNodePool",
        "metadata": {
            "name": f"{cluster}-nodes",
            "namespace": spec.kafka.namespace,
            "labels": _pool_labels(name, uid, "pool-kafka", cluster),
        },
        "spec": {
            "replicas": spec.kafka.replicas,
            "roles": ["controller", "broker"],
            "storage": storage,
            "template": {
                "pod": {
                    "affinity": _node_affinity(spec.nodeSelector),
                    "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
                }
            },
        },
    }
    if spec.kafka.resources is not None:
        body["spec"]["resources"] = spec.kafka.resources.model_dump(exclude_none=True)
    return body


def mirror_user_name(name: str, spec: FilterPoolSpec) -> str:
    """Name of the KafkaUser (and its Secret) MirrorMaker 2 writes with: ``<pool kafka>-mirror``."""
    return f"{pool_kafka_name(name, spec)}-mirror"


def build_mirror_user(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The KafkaUser MirrorMaker 2 writes to the pool-local Kafka with: the mirrored topic and its
    own Connect storage topics and group."""
    cluster = pool_kafka_name(name, spec)
    prefix = f"{cluster}-mirror"

    def acl(rtype: str, rname: str, pattern: str = "literal") -> dict[str, Any]:
        return {"resource": {"type": rtype, "name": rname, "patternType": pattern}, "operations": ["All"]}

    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {
            "name": mirror_user_name(name, spec),
            "namespace": spec.kafka.namespace,
            "labels": _pool_labels(name, uid, "mirror", cluster),
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    acl("topic", spec.mirror.topic),
                    acl("topic", prefix, "prefix"),
                    acl("group", prefix),
                    {"resource": {"type": "cluster"}, "operations": ["Describe", "DescribeConfigs"]},
                ],
            },
        },
    }


def build_mirror_maker2(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The ``KafkaMirrorMaker2`` (v1 shape) copying the full alert stream from the central Kafka to the
    pool-local one, keeping topic names (``IdentityReplicationPolicy``), pinned to the pool's nodes."""
    cluster = pool_kafka_name(name, spec)
    ns = spec.kafka.namespace
    prefix = f"{cluster}-mirror"
    target: dict[str, Any] = {
        "alias": cluster,
        "bootstrapServers": f"{cluster}-kafka-bootstrap.{ns}.svc:{KAFKA_PORT}",
        "groupId": prefix,
        "configStorageTopic": f"{prefix}-configs",
        "statusStorageTopic": f"{prefix}-status",
        "offsetStorageTopic": f"{prefix}-offsets",
        "config": {
            "config.storage.replication.factor": -1,
            "offset.storage.replication.factor": -1,
            "status.storage.replication.factor": -1,
            "producer.max.request.size": 10 * 1024 * 1024,
        },
    }
    if spec.kafka.authentication == "scram-sha-512":
        target["authentication"] = {
            "type": "scram-sha-512",
            "username": mirror_user_name(name, spec),
            "passwordSecret": {"secretName": mirror_user_name(name, spec), "password": "password"},
        }
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaMirrorMaker2",
        "metadata": {"name": prefix, "namespace": ns, "labels": _pool_labels(name, uid, "mirror", cluster)},
        "spec": {
            "replicas": spec.mirror.replicas,
            "target": target,
            "mirrors": [
                {
                    "source": {
                        "alias": spec.mirror.sourceCluster,
                        "bootstrapServers": spec.mirror.sourceBootstrapServers,
                    },
                    "sourceConnector": {
                        "tasksMax": spec.mirror.tasksMax,
                        "config": {
                            "replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
                            "replication.factor": -1,
                            "offset-syncs.topic.replication.factor": -1,
                            "sync.topic.acls.enabled": "false",
                            "sync.topic.configs.enabled": "true",
                            "refresh.topics.interval.seconds": 60,
                        },
                    },
                    "topicsPattern": spec.mirror.topic,
                }
            ],
            "template": {
                "pod": {
                    "affinity": _node_affinity(spec.nodeSelector),
                    "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
                }
            },
        },
    }
