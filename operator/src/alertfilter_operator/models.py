"""Typed models of the ``AlertFilter`` and ``FilterPool`` custom resources (``alerts.lsst.io/v1alpha1``).

These models are the one source of truth: ``crdgen.py`` generates ``crds/*.yaml`` from them, and
the operator parses every resource it reconciles with them. Field descriptions become the
``kubectl explain`` text.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from alertfilter.convert import SettingError
from alertfilter.positions import RFC3339, rfc3339_time, start_position

from .crd_common import (
    DEFAULT_FILTERS_PER_NODE,
    DEFAULT_MAX_ALERTS_PER_VISIT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RETENTION_MS,
    DNS_LABEL,
    FIELD_PATH,
    FILTER_NAME_MAX,
    IMAGE_REF,
    IMAGE_REF_MAX,
    KAFKA_TOPIC_MAX,
    MAX_RETENTION_MS,
    MAX_SOURCE_BYTES,
    OUTPUT_TOPIC_MAX,
    PY_IDENTIFIER,
    QUANTITY,
    TOPIC_NAME,
    Condition,
    Conditions,
    CrdModel,
    Limits,
    ResourceList,
    Resources,
    Toleration,
    cel,
)
from .filter_status_models import AlertFilterStatus, OwnedNames, SourceError
from .pool_models import Capacity, FilterPoolSpec, FilterPoolStatus, Mirror, PoolKafka, Storage, pool_kafka_name

__all__ = [
    "DEFAULT_FILTERS_PER_NODE",
    "DEFAULT_MAX_ALERTS_PER_VISIT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_RETENTION_MS",
    "DNS_LABEL",
    "FIELD_PATH",
    "FILTER_NAME_MAX",
    "KAFKA_TOPIC_MAX",
    "MAX_RETENTION_MS",
    "MAX_SOURCE_BYTES",
    "OUTPUT_TOPIC_MAX",
    "PY_IDENTIFIER",
    "QUANTITY",
    "TOPIC_NAME",
    "AlertFilterSpec",
    "AlertFilterStatus",
    "Capacity",
    "Condition",
    "Conditions",
    "CrdModel",
    "FilterPoolSpec",
    "FilterPoolStatus",
    "Limits",
    "Mirror",
    "OutputSpec",
    "OwnedNames",
    "PoolKafka",
    "ResourceList",
    "Resources",
    "SourceError",
    "Storage",
    "Toleration",
    "cel",
    "pool_kafka_name",
]


# --- AlertFilter ---------------------------------------------------------------------------------
#: RFC 3339 (alertfilter.positions.RFC3339) as a CEL string literal: its backslash doubled.
RFC3339_CEL = RFC3339.pattern.replace("\\", "\\\\")


class OutputSpec(CrdModel):
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
                "x-kubernetes-validations": [cel("self != '.' && self != '..'", "'.' and '..' are not topic names")]
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


class AlertFilterSpec(CrdModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.entrypoint) || self.source.contains(self.entrypoint)",
                    "spec.entrypoint must name a class or function defined in spec.source",
                    ".entrypoint",
                ),
                cel(
                    "(has(oldSelf.output) && has(oldSelf.output.topic)) == (has(self.output) && has(self.output.topic)) && "
                    "(!has(self.output) || !has(self.output.topic) || self.output.topic == oldSelf.output.topic)",
                    "spec.output.topic cannot change: the old topic and its data would be left behind; "
                    "create a new AlertFilter instead",
                    ".output.topic",
                ),
                cel(
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
    image: Annotated[
        str | None,
        Field(
            description="Container image of the filter's runner pods, for a filter that imports packages the runner "
            "image lacks: an image built FROM the runner image (alertfilter-runner) that adds them, as in "
            "examples/custom-image/Dockerfile. Default: the operator's runner image. Its code runs in the runner's "
            "process with this filter's own Kafka credentials only (its KafkaUser's ACLs: read the pool's input, "
            "write its own topics); the FilterPool's spec.allowedImages says which images its filters may name. "
            "With an image set, the admission webhook no longer refuses imports the runner image lacks: the image "
            "decides (a missing module fails the runner's start, RunnerReady says why). Recorded in status.image.",
            pattern=IMAGE_REF,
            max_length=IMAGE_REF_MAX,
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
            description="Accept at most this many alerts per visit (default 20, the original design's figure); 0 for no "
            "cap. Exact at any number of replicas: with several, a cap stage in the runner pods forwards the first N "
            "of each visit.",
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
    startFrom: Annotated[
        str,
        Field(
            description="Where a new filter starts reading the input: latest (default: alerts from now on), earliest "
            "(everything the pool's mirrored topic still holds) or an RFC 3339 time such as 2026-06-01T00:00:00Z "
            "(the first alert at or after it; a time past the end: from now on). Applies only to the filter's first "
            "run (its consumer group has no committed offset yet); changing it later moves nothing: use replayFrom.",
            max_length=64,
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel(
                        f"self == 'latest' || self == 'earliest' || self.matches('{RFC3339_CEL}')",
                        "spec.startFrom must be latest, earliest or an RFC 3339 time such as 2026-06-01T00:00:00Z",
                    )
                ]
            },
        ),
    ] = "latest"
    replayFrom: Annotated[
        str | None,
        Field(
            description="Replay: rewind the running filter to the first alert at or after this RFC 3339 time (such as "
            "2026-06-01T00:00:00Z) and filter everything from there again, once. The runners restart, each input "
            "partition is rewound (offsets_for_times), the per-visit cap counts the replayed alerts afresh, and the "
            "output topic keeps what it had (replayed alerts are written again after it). Setting the same time again "
            "does nothing; a new time is a new replay. status.replay records what was replayed and when. Alerts older "
            "than the mirrored topic's retention are gone: a replay starts at the oldest one left.",
            max_length=64,
            json_schema_extra={
                "x-kubernetes-validations": [
                    cel(
                        f"self.matches('{RFC3339_CEL}')",
                        "spec.replayFrom must be an RFC 3339 time such as 2026-06-01T00:00:00Z",
                    )
                ]
            },
        ),
    ] = None
    output: Annotated[
        OutputSpec,
        Field(
            description="The output topic (accepted alerts) and its dead-letter companion.", default_factory=OutputSpec
        ),
    ]
    replicas: Annotated[
        int,
        Field(
            description="Filter-runner pods; they share the input partitions (spec.suspend scales to zero). With a "
            "cap and more than one, accepted alerts pass through the filter's candidates topic, "
            "af.<namespace>.<name>.candidates, whose cap stage keeps the cap exact.",
            ge=1,
            le=100,
        ),
    ] = 1
    resources: Annotated[
        Resources | None,
        Field(
            description="Resources of each filter-runner pod. Default, from the density benchmark: requests "
            "150m CPU and 384Mi (100 runners on a 16 vCPU, 64 GiB node); limits 1 CPU and 1Gi. A limit left "
            "out is the default one, or the request when that is larger."
        ),
    ] = None
    suspend: Annotated[bool, Field(description="Scale the runner to zero; the topics and their data stay.")] = False
    limits: Annotated[
        Limits | None,
        Field(
            description="Guards on what the filter forwards: maxAcceptedPerDay, maxBytesPerDay, maxMatchRate. Each "
            "field set here overrides the same field of its FilterPool's spec.defaultLimits. Passing one stops "
            "forwarding for the rest of the UTC day (or of the match-rate window): the alerts are still counted "
            "and their offsets committed, and the Limited condition gives the figure. Per runner pod: with "
            "replicas > 1 each runner gets its share of the per-day limits (limit / replicas, at least 1)."
        ),
    ] = None
    stream: Annotated[
        Literal["auto", "full"],
        Field(
            description="Which stream the runner reads. auto: the pool's lean stream (cutouts null) when the fields the "
            "filter declares (a literal `fields` list) or that its source shows it reads include no cutout, else the "
            "full stream; either way an accepted alert is forwarded whole, cutouts and all. full: always the full "
            "stream. status.inputStream says which and why."
        ),
    ] = "auto"

    @field_validator("startFrom")
    @classmethod
    def _start_position(cls, value: str) -> str:
        """The CRD's rule, with the calendar checked too (no 30 February)."""
        try:
            return start_position(value)
        except SettingError:
            raise ValueError(
                "spec.startFrom must be latest, earliest or an RFC 3339 time such as 2026-06-01T00:00:00Z"
            ) from None

    @field_validator("replayFrom")
    @classmethod
    def _replay_time(cls, value: str | None) -> str | None:
        """The CRD's rule, with the calendar checked too."""
        if value is None:
            return None
        try:
            return rfc3339_time(value)
        except SettingError:
            raise ValueError("spec.replayFrom must be an RFC 3339 time such as 2026-06-01T00:00:00Z") from None

    @field_validator("source")
    @classmethod
    def _source_fits(cls, source: str) -> str:
        """The byte bound of the CRD's rule, for a spec that reaches the operator without it."""
        size = len(source.encode("utf-8", "surrogatepass"))
        if size > MAX_SOURCE_BYTES:
            raise ValueError(f"spec.source is {size} bytes; at most {MAX_SOURCE_BYTES} (UTF-8)")
        return source
