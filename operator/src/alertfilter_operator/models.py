"""Typed models of the ``AlertFilter`` and ``FilterPool`` custom resources (``alerts.lsst.io/v1alpha1``).

These models are the one source of truth: ``crdgen.py`` generates ``crds/*.yaml`` from them, and
the operator parses every resource it reconciles with them. Field descriptions become the
``kubectl explain`` text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The original design's cap: 20 alerts per visit per filter (DMTN-028).
DEFAULT_MAX_ALERTS_PER_VISIT = 20
#: Largest record a filter's topics take, bytes. Rubin alerts are 50-250 KB (DMTN-102).
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Output retention: 7 days, ms; at most 365 days.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
MAX_RETENTION_MS = 365 * 24 * 3600 * 1000
#: Filters per node: the original mini-broker ran 20-50 per m4.4xlarge (DMTN-028); 50 is the top.
DEFAULT_FILTERS_PER_NODE = 50

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Longest AlertFilter name: a DNS label (see ``naming.py`` for why).
FILTER_NAME_MAX = 63
TOPIC_NAME = r"^[a-zA-Z0-9._-]{1,249}$"
#: Kafka's longest topic name (``org.apache.kafka.common.internals.Topic``), and the longest output
#: topic: its dead-letter topic is ``<output>.deadletter`` (11 characters more).
KAFKA_TOPIC_MAX = 249
OUTPUT_TOPIC_MAX = KAFKA_TOPIC_MAX - len(".deadletter")
FIELD_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
PY_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|E|Ei|P|Pi)?$"
#: Largest filter source, bytes of UTF-8. ``kubectl apply`` keeps a copy of the whole object in an
#: annotation, and all annotations together may hold 256 KiB: half of that leaves room for the
#: copy's JSON escapes and the rest of the object. (kopf's own record of the spec keeps only the
#: source's hash: see ``handlers.configure``.)
MAX_SOURCE_BYTES = 128 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    v: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        v["fieldPath"] = field_path
    return v


# --- shared ------------------------------------------------------------------------------------
class ResourceList(_Model):
    """CPU and memory quantities."""

    cpu: Annotated[str | None, Field(description="CPU, as a Kubernetes quantity (e.g. 250m).", pattern=QUANTITY)] = None
    memory: Annotated[
        str | None, Field(description="Memory, as a Kubernetes quantity (e.g. 512Mi).", pattern=QUANTITY)
    ] = None


class Resources(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || "
                    "quantity(self.limits.memory).compareTo(quantity(self.requests.memory)) >= 0",
                    "limits.memory must be at least requests.memory",
                ),
                _cel(
                    "!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || "
                    "quantity(self.limits.cpu).compareTo(quantity(self.requests.cpu)) >= 0",
                    "limits.cpu must be at least requests.cpu",
                ),
            ]
        },
    )
    requests: Annotated[ResourceList | None, Field(description="Resources reserved for each filter-runner pod.")] = None
    limits: Annotated[ResourceList | None, Field(description="Most each filter-runner pod may use.")] = None


class Toleration(_Model):
    """A toleration of a node taint (the Kubernetes Toleration shape)."""

    key: Annotated[str | None, Field(description="Taint key the toleration applies to.")] = None
    operator: Annotated[Literal["Exists", "Equal"] | None, Field(description="Exists or Equal (default Equal).")] = None
    value: Annotated[str | None, Field(description="Taint value to match with operator Equal.")] = None
    effect: Annotated[
        Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None,
        Field(description="Taint effect to match; empty matches all."),
    ] = None
    tolerationSeconds: Annotated[
        int | None, Field(description="For NoExecute: how long the pod stays bound after the taint appears, s.", ge=0)
    ] = None


class Condition(_Model):
    """One status condition (Kubernetes API conventions)."""

    type: Annotated[
        str,
        Field(
            description="Condition type: SourceValid, TopicReady, RunnerReady, Ready (AlertFilter); KafkaReady, MirrorReady, Ready (FilterPool)."
        ),
    ]
    status: Annotated[Literal["True", "False", "Unknown"], Field(description="True, False or Unknown.")]
    reason: Annotated[str, Field(description="One-word CamelCase reason for the condition's last transition.")] = ""
    message: Annotated[str, Field(description="Human-readable detail.")] = ""
    lastTransitionTime: Annotated[str | None, Field(description="When the status last changed (RFC 3339).")] = None
    observedGeneration: Annotated[
        int | None, Field(description="The .metadata.generation the condition was set for.")
    ] = None


Conditions = Annotated[
    list[Condition],
    Field(
        description="The resource's status conditions, one per type (Kubernetes API conventions).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


# --- AlertFilter ---------------------------------------------------------------------------------
class OutputSpec(_Model):
    topic: Annotated[
        str | None,
        Field(
            description="Name of the output topic on the pool's Kafka. Default: <namespace>.<name>. At most "
            f"{OUTPUT_TOPIC_MAX} characters (its dead-letter topic is <topic>.deadletter); never a pool's input, an "
            "internal topic, another filter's topic, or a name under another namespace's '<namespace>.' prefix. "
            "Cannot change once set.",
            pattern=TOPIC_NAME,
            max_length=OUTPUT_TOPIC_MAX,
            json_schema_extra={
                "x-kubernetes-validations": [_cel("self != '.' && self != '..'", "'.' and '..' are not topic names")]
            },
        ),
    ] = None
    partitions: Annotated[
        int,
        Field(
            description="Partitions of the output and dead-letter topics (at most 100: a filter's output is at most "
            "its cap per visit, and every partition costs the shared brokers).",
            ge=1,
            le=100,
        ),
    ] = 1
    replicas: Annotated[
        int | None,
        Field(
            description="Replication factor of the topics. Default: the pool Kafka's replica count, at most 3.",
            ge=1,
            le=10,
        ),
    ] = None
    retentionMs: Annotated[
        int,
        Field(
            description="How long accepted alerts are kept, ms (default 7 days, at most 365 days: the pool's disks are shared).",
            ge=60_000,
            le=MAX_RETENTION_MS,
        ),
    ] = DEFAULT_RETENTION_MS
    maxMessageBytes: Annotated[
        int,
        Field(
            description="Largest record the topics take, bytes (default 4 MiB; Rubin alerts are 50-250 KB).",
            ge=1024 * 1024,
            le=64 * 1024 * 1024,
        ),
    ] = DEFAULT_MAX_MESSAGE_BYTES


class AlertFilterSpec(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.entrypoint) || self.source.contains(self.entrypoint)",
                    "spec.entrypoint must name a class or function defined in spec.source",
                    ".entrypoint",
                ),
                _cel(
                    "(has(oldSelf.output) && has(oldSelf.output.topic)) == (has(self.output) && has(self.output.topic)) && "
                    "(!has(self.output) || !has(self.output.topic) || self.output.topic == oldSelf.output.topic)",
                    "spec.output.topic cannot change: the old topic and its data would be left behind; "
                    "create a new AlertFilter instead",
                    ".output.topic",
                ),
                _cel(
                    f"size(bytes(self.source)) <= {MAX_SOURCE_BYTES}",
                    f"spec.source must be at most {MAX_SOURCE_BYTES} bytes (UTF-8)",
                    ".source",
                ),
            ]
        },
    )

    source: Annotated[
        str,
        Field(
            description="Python source of the filter: a class deriving from alertfilter.AlertFilter with "
            "filter(self, alert) -> bool, or a function taking the alert (a dict) and returning a bool.",
            min_length=1,
            max_length=MAX_SOURCE_BYTES,
        ),
    ]
    entrypoint: Annotated[
        str | None,
        Field(
            description="Name of the class or function to run when the source defines several.",
            pattern=PY_IDENTIFIER,
            max_length=200,
        ),
    ] = None
    pool: Annotated[
        str | None,
        Field(
            description="FilterPool to run in. Default: the pool with the most free capacity (ties: by name), chosen by "
            "the operator. Can be corrected until the filter runs in a pool; cannot change after.",
            pattern=DNS_LABEL,
            max_length=63,
        ),
    ] = None
    maxAlertsPerVisit: Annotated[
        int,
        Field(
            description="Accept at most this many alerts per visit (default 20, the original design's figure); 0 for no cap.",
            ge=0,
            le=1_000_000,
        ),
    ] = DEFAULT_MAX_ALERTS_PER_VISIT
    visitField: Annotated[
        str, Field(description="Dotted path of the visit id in an alert.", pattern=FIELD_PATH, max_length=256)
    ] = "diaSource.visit"
    idField: Annotated[
        str,
        Field(
            description="Dotted path of the alert id, used in logs and dead letters.",
            pattern=FIELD_PATH,
            max_length=256,
        ),
    ] = "diaSourceId"
    filterTimeoutSeconds: Annotated[
        float, Field(description="Time budget of one filter call, s; slower calls are errors.", gt=0, le=60)
    ] = 1.0
    exactlyOnce: Annotated[
        bool,
        Field(description="Write accepted alerts with Kafka transactions (exactly once) instead of at least once."),
    ] = False
    output: Annotated[
        OutputSpec,
        Field(
            description="The output topic (accepted alerts) and its dead-letter companion.", default_factory=OutputSpec
        ),
    ]
    replicas: Annotated[
        int,
        Field(
            description="Filter-runner pods; they share the input partitions (spec.suspend scales to zero).",
            ge=1,
            le=100,
        ),
    ] = 1
    resources: Annotated[
        Resources | None,
        Field(
            description="Resources of each filter-runner pod. Default: requests 250m CPU and 1Gi, "
            "so that 50 runners fit on a 16 vCPU, 64 GiB node; limits 1 CPU and 1536Mi. A limit left "
            "out is the default one, or the request when that is larger."
        ),
    ] = None
    suspend: Annotated[bool, Field(description="Scale the runner to zero; the topics and their data stay.")] = False

    @field_validator("source")
    @classmethod
    def _source_fits(cls, source: str) -> str:
        """The byte bound of the CRD's rule, for a spec that reaches the operator without it."""
        size = len(source.encode("utf-8", "surrogatepass"))
        if size > MAX_SOURCE_BYTES:
            raise ValueError(f"spec.source is {size} bytes; at most {MAX_SOURCE_BYTES} (UTF-8)")
        return source


class SourceError(_Model):
    """Where and why spec.source fails to load."""

    line: Annotated[int, Field(description="1-based line of the error in spec.source.")]
    column: Annotated[int, Field(description="1-based column of the error.")]
    message: Annotated[str, Field(description="What is wrong.")]


class OwnedNames(_Model):
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


class AlertFilterStatus(_Model):
    model_config = ConfigDict(extra="allow")
    observedGeneration: Annotated[int | None, Field(description="The .metadata.generation the status reflects.")] = None
    conditions: Conditions = []
    pool: Annotated[str | None, Field(description="The FilterPool the filter runs in.")] = None
    inputTopic: Annotated[str | None, Field(description="The mirrored full-stream topic the runner reads.")] = None
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
    sourceError: Annotated[SourceError | None, Field(description="Where spec.source fails to load, when it does.")] = (
        None
    )


# --- FilterPool ----------------------------------------------------------------------------------
class Capacity(_Model):
    nodes: Annotated[int, Field(description="Nodes in the pool.", ge=1, le=10_000)] = 1
    filtersPerNode: Annotated[
        int,
        Field(
            description="Filter-runner pods per node (default 50; the original design ran 20-50 per m4.4xlarge).",
            ge=1,
            le=500,
        ),
    ] = DEFAULT_FILTERS_PER_NODE


class Storage(_Model):
    """Storage of the pool-local brokers (Strimzi's storage shapes)."""

    type: Annotated[
        Literal["persistent-claim", "ephemeral"], Field(description="Strimzi storage type of the pool-local brokers.")
    ] = "persistent-claim"
    size: Annotated[str | None, Field(description="Volume size per broker (e.g. 500Gi).", pattern=QUANTITY)] = "100Gi"
    storageClass: Annotated[
        str | None, Field(description="StorageClass of the volumes; default: the cluster's default.", alias="class")
    ] = None
    deleteClaim: Annotated[bool, Field(description="Delete the volumes when the pool is deleted.")] = False


class PoolKafka(_Model):
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


class Mirror(_Model):
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
                "x-kubernetes-validations": [_cel("self != '.' && self != '..'", "'.' and '..' are not topic names")]
            },
        ),
    ] = "alerts"
    replicas: Annotated[int, Field(description="MirrorMaker 2 (Kafka Connect) workers.", ge=1, le=20)] = 1
    tasksMax: Annotated[
        int, Field(description="Most source-connector tasks (at most the topic's partitions help).", ge=1, le=1000)
    ] = 4


class FilterPoolSpec(_Model):
    nodeSelector: Annotated[
        dict[str, str],
        Field(
            description="Labels of the pool's nodes; filter-runner and broker pods are pinned to them.", min_length=1
        ),
    ]
    tolerations: Annotated[list[Toleration], Field(description="Tolerations for the pool nodes' taints.")] = []
    capacity: Annotated[
        Capacity,
        Field(description="How many filters the pool takes: nodes x filtersPerNode.", default_factory=Capacity),
    ]
    kafka: Annotated[PoolKafka, Field(description="The pool-local Kafka cluster.", default_factory=PoolKafka)]
    mirror: Annotated[
        Mirror, Field(description="The MirrorMaker 2 mirror of the full alert stream from the central Kafka.")
    ]


class FilterPoolStatus(_Model):
    model_config = ConfigDict(extra="allow")
    observedGeneration: Annotated[int | None, Field(description="The .metadata.generation the status reflects.")] = None
    conditions: Conditions = []
    capacity: Annotated[int | None, Field(description="Filters the pool can take (nodes x filtersPerNode).")] = None
    used: Annotated[int | None, Field(description="Filters placed in the pool.")] = None
    free: Annotated[int | None, Field(description="Filters the pool can still take.")] = None
    bootstrapServers: Annotated[str | None, Field(description="Bootstrap address of the pool-local Kafka.")] = None
    kafkaCluster: Annotated[str | None, Field(description="Name of the pool-local Strimzi Kafka.")] = None


def pool_kafka_name(pool_name: str, spec: FilterPoolSpec) -> str:
    """The pool-local Kafka cluster's name: ``spec.kafka.clusterName`` or ``<pool>-kafka``."""
    return spec.kafka.clusterName or f"{pool_name}-kafka"
