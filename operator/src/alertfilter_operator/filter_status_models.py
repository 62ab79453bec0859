"""Typed models of an ``AlertFilter``'s status (``alerts.lsst.io/v1alpha1``): the names it owns, its
last replay, where its source fails; re-exported by ``models.py``, the one import point. Field
descriptions become the ``kubectl explain`` text."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from .crd_common import Conditions, CrdModel


class SourceError(CrdModel):
    """Where and why spec.source fails to load."""

    line: Annotated[int, Field(description="1-based line of the error in spec.source.")]
    column: Annotated[int, Field(description="1-based column of the error.")]
    message: Annotated[str, Field(description="What is wrong.")]


class OwnedNames(CrdModel):
    """The names an AlertFilter owns (``naming.py``): collision-free across namespaces."""

    outputTopic: Annotated[str, Field(description="The output topic.")]
    deadLetterTopic: Annotated[str, Field(description="The dead-letter topic.")]
    consumerGroup: Annotated[
        str, Field(description="The runners' consumer group: alertfilter.<namespace>.<name>.<uid>.")
    ]
    transactionalIdPrefix: Annotated[str, Field(description="Prefix of the runners' transactional ids.")]
    kafkaUser: Annotated[str, Field(description="The KafkaUser and SCRAM user: af.<namespace>.<name>.")]
    outputKafkaTopic: Annotated[str, Field(description="The output topic's KafkaTopic resource.")]
    deadLetterKafkaTopic: Annotated[str, Field(description="The dead-letter topic's KafkaTopic resource.")]
    runner: Annotated[str, Field(description="The runner's Deployment, ConfigMap and NetworkPolicy: af-<name>.")]
    credentialsSecret: Annotated[str, Field(description="The Secret holding the runner's Kafka password.")]
    candidatesTopic: Annotated[
        str | None,
        Field(description="The candidates topic and its KafkaTopic (a cap with several replicas, now or since)."),
    ] = None
    capStageGroup: Annotated[
        str | None, Field(description="The cap stage's consumer group on the candidates topic: <consumerGroup>.cap.")
    ] = None


class ReplayPartition(CrdModel):
    """Where one input partition was rewound."""

    partition: Annotated[int, Field(description="The input partition.")]
    offset: Annotated[
        int | None, Field(description="The offset it was rewound to (the first alert at or after the time).")
    ] = None


class ReplayStatus(CrdModel):
    """The last replay requested with spec.replayFrom."""

    from_: Annotated[str, Field(alias="from", description="The time replayed from (spec.replayFrom).")]
    requestId: Annotated[
        int,
        Field(
            description="The request's number: the filter's metadata.generation when replayFrom was set. The runners "
            "mark each partition's committed offset with it, so no partition is rewound twice for one request."
        ),
    ]
    requestedAt: Annotated[str, Field(description="When the operator saw the request (RFC 3339).")]
    completedAt: Annotated[
        str | None, Field(description="When every input partition had been rewound (RFC 3339); absent until then.")
    ] = None
    partitions: Annotated[
        list[ReplayPartition] | None, Field(description="The partitions rewound so far, with their offsets.")
    ] = None


class AlertFilterStatus(CrdModel):
    model_config = ConfigDict(extra="allow")
    observedGeneration: Annotated[int | None, Field(description="The .metadata.generation the status reflects.")] = None
    conditions: Conditions = []  # noqa: RUF012 - a pydantic field (copied per instance), as in its own base module
    pool: Annotated[str | None, Field(description="The FilterPool the filter runs in.")] = None
    inputTopic: Annotated[
        str | None, Field(description="The topic the runner reads: the mirrored full stream or the pool's lean stream.")
    ] = None
    inputStream: Annotated[
        str | None, Field(description="lean or full: which stream the runner reads, and why (spec.stream).")
    ] = None
    outputTopic: Annotated[str | None, Field(description="The topic accepted alerts are written to.")] = None
    deadLetterTopic: Annotated[str | None, Field(description="The topic alerts that could not be filtered go to.")] = (
        None
    )
    bootstrapServers: Annotated[
        str | None, Field(description="Bootstrap address of the pool's Kafka, for consumers of the output topic.")
    ] = None
    kafkaNamespace: Annotated[str | None, Field(description="Namespace of the pool's Kafka, its topics and users.")] = (
        None
    )
    names: Annotated[
        OwnedNames | None,
        Field(
            description="Every name the filter owns, derived from its namespace, name and uid; nothing else is ever written."
        ),
    ] = None
    sourceHash: Annotated[str | None, Field(description="sha256 of spec.source (hex).")] = None
    image: Annotated[
        str | None,
        Field(description="The image the runner pods run: spec.image, or the operator's runner image."),
    ] = None
    sourceError: Annotated[SourceError | None, Field(description="Where spec.source fails to load, when it does.")] = (
        None
    )
    lag: Annotated[
        int | None,
        Field(
            description="Consumer lag: input messages the runners have not processed yet, summed over the input's "
            "partitions, as the runners last reported it (their status, read every runnerStatusSeconds); absent while "
            "no runner answers."
        ),
    ] = None
    replay: Annotated[
        ReplayStatus | None, Field(description="The last replay (spec.replayFrom): what, when, where.")
    ] = None
    lastAcceptedTime: Annotated[
        str | None,
        Field(
            description="When a runner last had an accepted alert acknowledged by the output topic (RFC 3339); kept "
            "across runner restarts."
        ),
    ] = None
