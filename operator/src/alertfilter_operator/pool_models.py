"""Typed model of the ``FilterPool`` custom resource (``alerts.lsst.io/v1alpha1``): its nodes,
capacity, pool-local Kafka and mirror (``models.py`` re-exports it with the AlertFilter's)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .crd_common import (
    DEFAULT_FILTERS_PER_NODE,
    DNS_LABEL,
    IMAGE_REF,
    IMAGE_REF_MAX,
    KAFKA_TOPIC_MAX,
    QUANTITY,
    TOPIC_NAME,
    Conditions,
    CrdModel,
    Limits,
    Resources,
    Toleration,
    cel,
)


# --- FilterPool ----------------------------------------------------------------------------------
class Capacity(CrdModel):
    nodes: Annotated[int, Field(description="Nodes in the pool.", ge=1, le=10_000)] = 1
    filtersPerNode: Annotated[
        int,
        Field(
            description="Filter-runner pods per node (default 50; the original design ran 20-50 per m4.4xlarge).",
            ge=1,
            le=500,
        ),
    ] = DEFAULT_FILTERS_PER_NODE


class Storage(CrdModel):
    """Storage of the pool-local brokers (Strimzi's storage shapes)."""

    type: Annotated[
        Literal["persistent-claim", "ephemeral"], Field(description="Strimzi storage type of the pool-local brokers.")
    ] = "persistent-claim"
    size: Annotated[str | None, Field(description="Volume size per broker (e.g. 500Gi).", pattern=QUANTITY)] = "100Gi"
    storageClass: Annotated[
        str | None, Field(description="StorageClass of the volumes; default: the cluster's default.", alias="class")
    ] = None
    deleteClaim: Annotated[bool, Field(description="Delete the volumes when the pool is deleted.")] = False


class PoolKafka(CrdModel):
    clusterName: Annotated[
        str | None,
        Field(
            description="Name of the pool-local Strimzi Kafka. Default: <pool>-kafka.", pattern=DNS_LABEL, max_length=50
        ),
    ] = None
    namespace: Annotated[
        str,
        Field(
            description="Namespace of the pool-local Kafka, its topics, users and mirror.",
            pattern=DNS_LABEL,
            max_length=63,
        ),
    ] = "kafka"
    replicas: Annotated[
        int, Field(description="Brokers of the pool-local Kafka (combined broker/controller, KRaft).", ge=1, le=15)
    ] = 3
    authentication: Annotated[
        Literal["scram-sha-512", "none"],
        Field(
            description="Client authentication of the pool-local Kafka: scram-sha-512 (a KafkaUser with ACLs per filter) "
            "or none (development only)."
        ),
    ] = "scram-sha-512"
    storage: Annotated[Storage, Field(description="Broker storage.", default_factory=Storage)]
    resources: Annotated[Resources | None, Field(description="Resources of each broker.")] = None


class Mirror(CrdModel):
    sourceCluster: Annotated[
        str,
        Field(
            description="Alias of the central Kafka in MirrorMaker 2 (e.g. central).", pattern=DNS_LABEL, max_length=63
        ),
    ] = "central"
    sourceBootstrapServers: Annotated[
        str,
        Field(
            description="Bootstrap address of the central Kafka (host:port[,host:port]).", min_length=3, max_length=2048
        ),
    ]
    topic: Annotated[
        str,
        Field(
            description="The full-stream alert topic on the central Kafka; mirrored under the same name.",
            pattern=TOPIC_NAME,
            max_length=KAFKA_TOPIC_MAX,
            json_schema_extra={
                "x-kubernetes-validations": [cel("self != '.' && self != '..'", "'.' and '..' are not topic names")]
            },
        ),
    ] = "alerts"
    replicas: Annotated[int, Field(description="MirrorMaker 2 (Kafka Connect) workers.", ge=1, le=20)] = 1
    tasksMax: Annotated[
        int, Field(description="Most source-connector tasks (at most the topic's partitions help).", ge=1, le=1000)
    ] = 4


class LeanStream(CrdModel):
    """The pool's lean stream: the full stream with the cutouts null (``alertfilter lean``)."""

    enabled: Annotated[
        bool,
        Field(
            description="Run the lean stream: a producer copies the mirrored full stream to a lean topic with the cutout "
            "fields (cutoutDifference, cutoutScience, cutoutTemplate) set to null, and filters whose declared or "
            "inferred fields include no cutout read it (an accepted alert is still forwarded whole, read from the full "
            "stream). false: every filter reads the full stream."
        ),
    ] = True
    topic: Annotated[
        str | None,
        Field(
            description="The lean topic on the pool's Kafka. Default: <mirror.topic>.lean.",
            pattern=TOPIC_NAME,
            max_length=KAFKA_TOPIC_MAX,
            json_schema_extra={
                "x-kubernetes-validations": [cel("self != '.' && self != '..'", "'.' and '..' are not topic names")]
            },
        ),
    ] = None
    partitions: Annotated[
        int,
        Field(
            description="Partitions of the lean topic: at least the full stream's (each alert keeps its partition; the "
            "producer refuses to start with fewer).",
            ge=1,
            le=1000,
        ),
    ] = 1
    retentionMs: Annotated[
        int,
        Field(
            description="Retention of the lean topic, ms (default 3 days): at most the full stream's, so that an "
            "accepted lean alert's original is still there to forward.",
            ge=60_000,
            le=365 * 86_400_000,
        ),
    ] = 3 * 86_400_000
    resources: Annotated[
        Resources | None,
        Field(
            description="Resources of the lean producer's pod. Default: requests 200m CPU and 512Mi, limits 1 CPU and 1Gi."
        ),
    ] = None


class FilterPoolSpec(CrdModel):
    nodeSelector: Annotated[
        dict[str, str],
        Field(
            description="Labels of the pool's nodes; filter-runner and broker pods are pinned to them.", min_length=1
        ),
    ]
    tolerations: Annotated[list[Toleration], Field(description="Tolerations for the pool nodes' taints.")] = []  # noqa: RUF012 - pydantic copies it
    capacity: Annotated[
        Capacity,
        Field(description="How many filters the pool takes: nodes x filtersPerNode.", default_factory=Capacity),
    ]
    allowedImages: Annotated[
        list[
            Annotated[
                str,
                Field(description="A prefix of allowed image references.", pattern=IMAGE_REF, max_length=IMAGE_REF_MAX),
            ]
        ]
        | None,
        Field(
            description="Which images the pool's filters may name in spec.image, as prefixes of the image reference "
            "(end one with '/' or ':' to bound it: 'registry.example.org/broker-images/' allows every image under "
            "that path, 'registry.example.org/ztf/lc-filter:' every tag of one repository). A filter naming another "
            "image is refused at apply (and, placed here before the list changed, has no runner). Unset: any image; "
            "[]: none (only the operator's runner image). A custom image is code the pool runs with that filter's "
            "Kafka credentials: list only images you trust.",
            max_length=100,
        ),
    ] = None
    kafka: Annotated[PoolKafka, Field(description="The pool-local Kafka cluster.", default_factory=PoolKafka)]
    mirror: Annotated[
        Mirror, Field(description="The MirrorMaker 2 mirror of the full alert stream from the central Kafka.")
    ]
    defaultLimits: Annotated[
        Limits | None,
        Field(
            description="Limits of every filter of the pool (same fields as an AlertFilter's spec.limits); a field "
            "a filter sets in its own spec.limits overrides the pool's."
        ),
    ] = None
    lean: Annotated[
        LeanStream,
        Field(description="The pool's lean stream (cutouts null) and its producer.", default_factory=LeanStream),
    ]


class FilterPoolStatus(CrdModel):
    model_config = ConfigDict(extra="allow")
    observedGeneration: Annotated[int | None, Field(description="The .metadata.generation the status reflects.")] = None
    conditions: Conditions = []  # noqa: RUF012 - a pydantic field (copied per instance), as in its own base module
    capacity: Annotated[int | None, Field(description="Filters the pool can take (nodes x filtersPerNode).")] = None
    used: Annotated[int | None, Field(description="Filters placed in the pool.")] = None
    free: Annotated[int | None, Field(description="Filters the pool can still take.")] = None
    bootstrapServers: Annotated[str | None, Field(description="Bootstrap address of the pool-local Kafka.")] = None
    kafkaCluster: Annotated[str | None, Field(description="Name of the pool-local Strimzi Kafka.")] = None
    leanTopic: Annotated[
        str | None, Field(description="The lean topic (cutouts null) filters that read no cutout read; unset: none.")
    ] = None


def lean_topic_of(spec: FilterPoolSpec) -> str | None:
    """The pool's lean topic: ``spec.lean.topic`` or ``<mirror.topic>.lean``; None when the lean stream is off."""
    if not spec.lean.enabled:
        return None
    return spec.lean.topic or f"{spec.mirror.topic}.lean"


def pool_kafka_name(pool_name: str, spec: FilterPoolSpec) -> str:
    """The pool-local Kafka cluster's name: ``spec.kafka.clusterName`` or ``<pool>-kafka``."""
    return spec.kafka.clusterName or f"{pool_name}-kafka"
