"""What the builders are given: the filter being reconciled and what it needs of its pool.

Pure: plain frozen values made from the typed specs of ``models.py``; no API calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alertfilter_operator.models import AlertFilterSpec, FilterPoolSpec, pool_kafka_name
from alertfilter_operator.naming import (
    FILTER_LABEL,
    POOL_LABEL,
    candidates_topic,
    cap_stage_group,
    common_labels,
    consumer_group,
    credentials_secret_name,
    dead_letter_topic,
    kafka_user_name,
    output_topic,
    owner_labels,
    runner_name,
    topic_resource_name,
    transactional_id_prefix,
)
from alertfilter_operator.pool_models import lean_topic_of

#: Strimzi's API of the resources the operator writes (Strimzi 1.x ``kafka.strimzi.io/v1``).
STRIMZI_API = "kafka.strimzi.io/v1"
#: Client port of the pool-local Kafka's internal listener (Strimzi's conventional plain port).
KAFKA_PORT = 9092


@dataclass(frozen=True)
class PoolInfo:
    """What a filter needs to know of its pool.

    Attributes:
        name: the FilterPool's name.
        kafka_cluster: name of the pool-local Strimzi Kafka.
        kafka_namespace: its namespace.
        bootstrap: bootstrap address of its internal listener.
        input_topic: the mirrored full-stream topic.
        node_selector, tolerations: where the pool's pods go.
        kafka_replicas: broker count (bounds topic replication).
        authentication: ``scram-sha-512`` or ``none``.
        lean_topic: the pool's lean stream (cutouts null), or None when it has none.
        default_limits: the pool's ``spec.defaultLimits`` fields that are set (``{"maxAcceptedPerDay": 500}``).
    """

    name: str
    kafka_cluster: str
    kafka_namespace: str
    bootstrap: str
    input_topic: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    kafka_replicas: int = 3
    authentication: str = "scram-sha-512"
    lean_topic: str | None = None
    default_limits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, name: str, spec: FilterPoolSpec, kafka_status: dict[str, Any] | None = None) -> PoolInfo:
        """``kafka_status``: the pool Kafka's ``status``; its ``plain`` listener's ``bootstrapServers``,
        when Strimzi has published it, wins over the conventional service name."""
        cluster = pool_kafka_name(name, spec)
        ns = spec.kafka.namespace
        bootstrap = f"{cluster}-kafka-bootstrap.{ns}.svc:{KAFKA_PORT}"
        for listener in (kafka_status or {}).get("listeners") or []:
            if listener.get("name") == "plain" and listener.get("bootstrapServers"):
                bootstrap = listener["bootstrapServers"]
        return cls(
            name=name,
            kafka_cluster=cluster,
            kafka_namespace=ns,
            bootstrap=bootstrap,
            input_topic=spec.mirror.topic,
            node_selector=dict(spec.nodeSelector),
            tolerations=[t.model_dump(exclude_none=True) for t in spec.tolerations],
            kafka_replicas=spec.kafka.replicas,
            authentication=spec.kafka.authentication,
            lean_topic=lean_topic_of(spec),
            default_limits=spec.defaultLimits.model_dump(exclude_none=True) if spec.defaultLimits else {},
        )


@dataclass(frozen=True)
class FilterRef:
    """The AlertFilter being reconciled: identity and parsed spec; ``lean``: its runner reads the
    pool's lean stream (:func:`alertfilter.routing.route`); ``candidates``: it has a candidates topic
    (several replicas with a cap, now or since: see :attr:`cap_stage`)."""

    namespace: str
    name: str
    uid: str
    spec: AlertFilterSpec
    source_sha256: str
    lean: bool = False
    candidates: bool = False
    #: The replay its runners must carry out, ``(request id, RFC 3339 time)`` (``replay.py``), or None.
    replay: tuple[int, str] | None = None

    def input_topic(self, pool: PoolInfo) -> str:
        """The topic the runner reads: the pool's lean topic when routed there, else the full stream."""
        return pool.lean_topic if self.lean and pool.lean_topic else pool.input_topic

    @property
    def output_topic(self) -> str:
        """The output topic: ``spec.output.topic`` or ``<namespace>.<name>``."""
        return output_topic(self.namespace, self.name, self.spec.output.topic)

    @property
    def dead_letter_topic(self) -> str:
        """The dead-letter topic: ``<output topic>.deadletter``."""
        return dead_letter_topic(self.output_topic)

    @property
    def group(self) -> str:
        """The runners' consumer group on the input topic: ``alertfilter.<namespace>.<name>.<uid>``."""
        return consumer_group(self.namespace, self.name, self.uid)

    @property
    def transactional_id_prefix(self) -> str:
        """Prefix of the runners' transactional ids: ``alertfilter-<group>``."""
        return transactional_id_prefix(self.group)

    @property
    def runner_name(self) -> str:
        """Name of the children in the filter's namespace: ``af-<name>`` (at most 52 characters)."""
        return runner_name(self.name)

    @property
    def kafka_user(self) -> str:
        """Name of the KafkaUser, its Secret and its SCRAM user: ``af.<namespace>.<name>``."""
        return kafka_user_name(self.namespace, self.name)

    @property
    def output_topic_resource(self) -> str:
        """Name of the output topic's KafkaTopic: ``af.<namespace>.<name>.output``."""
        return topic_resource_name(self.namespace, self.name, "output")

    @property
    def dead_letter_topic_resource(self) -> str:
        """Name of the dead-letter topic's KafkaTopic: ``af.<namespace>.<name>.deadletter``."""
        return topic_resource_name(self.namespace, self.name, "deadletter")

    @property
    def candidates_topic(self) -> str:
        """The candidates topic, and its KafkaTopic: ``af.<namespace>.<name>.candidates``."""
        return candidates_topic(self.namespace, self.name)

    @property
    def cap_group(self) -> str:
        """The cap stage's consumer group: ``<group>.cap``."""
        return cap_stage_group(self.group)

    @property
    def capped(self) -> bool:
        """Whether the filter has a per-visit cap (``spec.maxAlertsPerVisit`` set and not 0)."""
        return bool(self.spec.maxAlertsPerVisit)

    @property
    def cap_stage(self) -> bool:
        """Whether its runners share the cap through a cap stage: a cap and several replicas."""
        return self.candidates and self.capped and self.spec.replicas > 1

    @property
    def credentials_secret(self) -> str:
        """The Secret in the filter's namespace holding the runner's Kafka password: ``af-<name>-kafka``."""
        return credentials_secret_name(self.name)

    def owned_names(self) -> dict[str, str]:
        """Every name the filter owns, as ``status.names`` records them (``kind: name``)."""
        return {
            "outputTopic": self.output_topic,
            "deadLetterTopic": self.dead_letter_topic,
            "consumerGroup": self.group,
            "transactionalIdPrefix": self.transactional_id_prefix,
            "kafkaUser": self.kafka_user,
            "outputKafkaTopic": self.output_topic_resource,
            "deadLetterKafkaTopic": self.dead_letter_topic_resource,
            "runner": self.runner_name,
            "credentialsSecret": self.credentials_secret,
            **({"candidatesTopic": self.candidates_topic, "capStageGroup": self.cap_group} if self.candidates else {}),
        }

    def labels(self, component: str = "filter-runner") -> dict[str, str]:
        """``app.kubernetes.io/*`` labels and ``alerts.lsst.io/filter`` of a child in the filter's namespace."""
        return {**common_labels(component, self.name), FILTER_LABEL: self.name}

    def outside_labels(self, pool: PoolInfo, component: str) -> dict[str, str]:
        """Labels of children in the Kafka namespace: Strimzi's cluster label and the owner's identity."""
        return {
            **common_labels(component, f"{self.namespace}.{self.name}"),
            **owner_labels("AlertFilter", self.namespace, self.name, self.uid),
            "strimzi.io/cluster": pool.kafka_cluster,
            POOL_LABEL: pool.name,
        }
