"""What both custom resources' models share: the base model, CEL rules, name and quantity
patterns, limits, and the Kubernetes shapes (resources, tolerations, conditions) they embed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alertfilter.limitspec import MAX_MATCH_WINDOW, MIN_MATCH_WINDOW

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
#: A container image reference (``[registry/]repository[:tag][@digest]``), or a prefix of one.
IMAGE_REF = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
IMAGE_REF_MAX = 512
#: Largest filter source, bytes of UTF-8. ``kubectl apply`` keeps a copy of the whole object in an
#: annotation, and all annotations together may hold 256 KiB: half of that leaves room for the
#: copy's JSON escapes and the rest of the object. (kopf's own record of the spec keeps only the
#: source's hash: see ``handlers.configure``.)
MAX_SOURCE_BYTES = 128 * 1024


class CrdModel(BaseModel):
    """A model of a custom resource's schema: unknown fields refused, fields by name or alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """An ``x-kubernetes-validations`` rule: a CEL ``rule``, its ``message``, the field it names."""
    v: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        v["fieldPath"] = field_path
    return v


# --- shared ------------------------------------------------------------------------------------
class Limits(CrdModel):
    """Guards on what a filter forwards (AlertFilter spec.limits; FilterPool spec.defaultLimits)."""

    maxAcceptedPerDay: Annotated[
        int | None,
        Field(
            description="Forward at most this many accepted alerts per UTC day (a positive integer). Once reached, "
            "the filter's further accepted alerts that day are not forwarded: they are counted as limited and their "
            "offsets committed, like capped ones (never replayed, never dead letters); the Limited condition says so. "
            "Forwarding resumes at 00:00 UTC.",
            ge=1,
        ),
    ] = None
    maxBytesPerDay: Annotated[
        int | None,
        Field(
            description="Forward at most this many bytes of accepted alerts (their values) per UTC day (a positive "
            "integer); an alert that would pass it is not forwarded, nor any after it that day (counted as limited, "
            "committed). Forwarding resumes at 00:00 UTC.",
            ge=1,
        ),
    ] = None
    maxMatchRate: Annotated[
        float | None,
        Field(
            description="The largest fraction of alerts the filter may accept (0 < maxMatchRate <= 1), over consecutive "
            f"windows of matchRateWindow alerts (default {MIN_MATCH_WINDOW}). Once a window has more accepted "
            "alerts than maxMatchRate x the window, nothing more is forwarded until the window's end (counted as "
            "limited, committed).",
            gt=0,
            le=1,
        ),
    ] = None
    matchRateWindow: Annotated[
        int | None,
        Field(
            description=f"Alerts of a maxMatchRate window (at least {MIN_MATCH_WINDOW}, the default).",
            ge=MIN_MATCH_WINDOW,
            le=MAX_MATCH_WINDOW,
        ),
    ] = None


class ResourceList(CrdModel):
    """CPU and memory quantities."""

    cpu: Annotated[str | None, Field(description="CPU, as a Kubernetes quantity (e.g. 250m).", pattern=QUANTITY)] = None
    memory: Annotated[
        str | None, Field(description="Memory, as a Kubernetes quantity (e.g. 512Mi).", pattern=QUANTITY)
    ] = None


class Resources(CrdModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || "
                    "quantity(self.limits.memory).compareTo(quantity(self.requests.memory)) >= 0",
                    "limits.memory must be at least requests.memory",
                ),
                cel(
                    "!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || "
                    "quantity(self.limits.cpu).compareTo(quantity(self.requests.cpu)) >= 0",
                    "limits.cpu must be at least requests.cpu",
                ),
            ]
        },
    )
    requests: Annotated[
        ResourceList | None, Field(description="What the scheduler reserves for each pod (Kubernetes requests).")
    ] = None
    limits: Annotated[ResourceList | None, Field(description="The most each pod may use (Kubernetes limits).")] = None


class Toleration(CrdModel):
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


class Condition(CrdModel):
    """One status condition (Kubernetes API conventions)."""

    type: Annotated[
        str,
        Field(
            description="Condition type: SourceValid, TopicReady, RunnerReady, Ready, Limited (AlertFilter); KafkaReady, MirrorReady, Ready (FilterPool)."
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
