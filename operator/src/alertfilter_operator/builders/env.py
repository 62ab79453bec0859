"""The filter-runner's settings as the environment of its container.

The runner reads every option of ``alertfilter run`` from an ``ALERTFILTER_<OPTION>`` variable
(``alertfilter run --help``); ``ALERTFILTER_KAFKA_<KEY>`` variables become librdkafka settings.
"""

from __future__ import annotations

from typing import Any

from alertfilter.settings import DEFAULT_BATCH_SIZE, largest_batch
from alertfilter.settings import runner_env as settings_env
from alertfilter_operator.naming import METRICS_PORT

from .refs import FilterRef, PoolInfo

#: The runner option of each field of spec.limits (and of a pool's spec.defaultLimits).
LIMIT_OPTIONS = {
    "maxAcceptedPerDay": "max-accepted-per-day",
    "maxBytesPerDay": "max-bytes-per-day",
    "maxMatchRate": "max-match-rate",
    "matchRateWindow": "match-rate-window",
}
#: The limits counted per UTC day: each runner pod of a filter gets its share of them.
PER_DAY_LIMITS = ("maxAcceptedPerDay", "maxBytesPerDay")
#: Where the runner container finds the filter source (the ConfigMap's mount).
FILTER_FILE_DIR = "/etc/alertfilter"
FILTER_FILE = "filter.py"


def effective_limits(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The filter's limits: each field of its ``spec.limits`` that is set, else the pool's
    ``spec.defaultLimits`` field (``{"maxAcceptedPerDay": 500, "maxMatchRate": 0.05}``; {} for none)."""
    own = f.spec.limits.model_dump(exclude_none=True) if f.spec.limits is not None else {}
    return {**pool.default_limits, **own}


def limit_values(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The runner options of the filter's limits (:func:`effective_limits`), by option name. Each
    runner pod counts only the alerts it processes, so with ``replicas`` > 1 a per-day limit is
    shared out: each runner gets ``limit // replicas`` (at least 1), and the pods together never
    forward more than the limit."""
    out: dict[str, Any] = {}
    replicas = max(1, f.spec.replicas)
    for name, value in effective_limits(f, pool).items():
        if name in PER_DAY_LIMITS:
            value = max(1, value // replicas)
        elif isinstance(value, float):
            value = repr(value)  # every digit the spec gave (the option table renders floats with 6)
        out[LIMIT_OPTIONS[name]] = value
    return out


def runner_env(
    f: FilterRef, pool: PoolInfo, schema_registry: str | None = None, schema_dir: str | None = None
) -> list[dict[str, Any]]:
    """The runner's settings as ``ALERTFILTER_*`` environment variables, rendered and checked by the
    runtime's own option table (:func:`alertfilter.settings.runner_env`; ``alertfilter run --help``).

    Raises:
        alertfilter.convert.SettingError: a value the runner would refuse (the models should prevent it).
    """
    s = f.spec
    values: dict[str, Any] = {
        "filter": f"{FILTER_FILE_DIR}/{FILTER_FILE}",
        "name": f.name,
        "bootstrap-servers": pool.bootstrap,
        "input": f.input_topic(pool),
        "output": f.output_topic,
        "dead-letter-topic": f.dead_letter_topic,
        "group": f.group,
        "visit-field": s.visitField,
        "id-field": s.idField,
        "filter-timeout": float(s.filterTimeoutSeconds),
        "max-message-bytes": s.output.maxMessageBytes,
        "metrics-port": METRICS_PORT,
        "log-format": "json",
        "start-from": s.startFrom,  # the group's first run only (alertfilter.positions)
    }
    if f.replay is not None:  # a new request: a rollout, and each partition rewound once (replay.py)
        values["replay-id"], values["replay-from"] = f.replay
    batch = largest_batch(float(s.filterTimeoutSeconds))
    if batch < DEFAULT_BATCH_SIZE:  # a batch of calls at a slow budget must fit max.poll.interval.ms
        values["batch-size"] = batch
    if s.maxAlertsPerVisit:
        values["max-alerts-per-visit"] = s.maxAlertsPerVisit
    else:
        values["no-visit-cap"] = True
    if s.entrypoint:
        values["entrypoint"] = s.entrypoint
    if s.exactlyOnce:
        values["exactly-once"] = True
    if f.candidates:  # with a cap stage (several replicas) or, with one, what the stages left there
        values["candidates-topic"] = f.candidates_topic
        values["cap-stage"] = f.cap_stage
    if f.input_topic(pool) != pool.input_topic:  # the lean stream: accepted alerts forward their originals
        values["full-topic"] = pool.input_topic
    values.update(limit_values(f, pool))
    if schema_registry:
        values["schema-registry"] = schema_registry
    elif schema_dir:
        values["schema-dir"] = schema_dir
    env = settings_env(values)  # the runner's own option table: a value it would refuse fails here
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    if pool.authentication == "scram-sha-512":
        out += [
            {"name": "ALERTFILTER_KAFKA_SECURITY_PROTOCOL", "value": "SASL_PLAINTEXT"},
            {"name": "ALERTFILTER_KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
            {"name": "ALERTFILTER_KAFKA_SASL_USERNAME", "value": f.kafka_user},
            {
                "name": "ALERTFILTER_KAFKA_SASL_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": f.credentials_secret, "key": "password"}},
            },
        ]
    return out
