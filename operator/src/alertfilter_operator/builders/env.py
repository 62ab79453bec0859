"""The filter-runner's settings as the environment of its container.

The runner reads every option of ``alertfilter run`` from an ``ALERTFILTER_<OPTION>`` variable
(``alertfilter run --help``); ``ALERTFILTER_KAFKA_<KEY>`` variables become librdkafka settings.
"""

from __future__ import annotations

from typing import Any

from alertfilter_operator.naming import METRICS_PORT

from .refs import FilterRef, PoolInfo

#: Where the runner container finds the filter source (the ConfigMap's mount).
FILTER_FILE_DIR = "/etc/alertfilter"
FILTER_FILE = "filter.py"


def runner_env(
    f: FilterRef, pool: PoolInfo, schema_registry: str | None = None, schema_dir: str | None = None
) -> list[dict[str, Any]]:
    """The runner's settings as ``ALERTFILTER_*`` environment variables (see ``alertfilter run --help``)."""
    s = f.spec
    env = {
        "ALERTFILTER_FILTER": f"{FILTER_FILE_DIR}/{FILTER_FILE}",
        "ALERTFILTER_NAME": f.name,
        "ALERTFILTER_BOOTSTRAP_SERVERS": pool.bootstrap,
        "ALERTFILTER_INPUT": pool.input_topic,
        "ALERTFILTER_OUTPUT": f.output_topic,
        "ALERTFILTER_DEAD_LETTER_TOPIC": f.dead_letter_topic,
        "ALERTFILTER_GROUP": f.group,
        "ALERTFILTER_VISIT_FIELD": s.visitField,
        "ALERTFILTER_ID_FIELD": s.idField,
        "ALERTFILTER_FILTER_TIMEOUT": f"{s.filterTimeoutSeconds:g}",
        "ALERTFILTER_MAX_MESSAGE_BYTES": str(s.output.maxMessageBytes),
        "ALERTFILTER_METRICS_PORT": str(METRICS_PORT),
        "ALERTFILTER_LOG_FORMAT": "json",
    }
    if s.maxAlertsPerVisit:
        env["ALERTFILTER_MAX_ALERTS_PER_VISIT"] = str(s.maxAlertsPerVisit)
    else:
        env["ALERTFILTER_NO_VISIT_CAP"] = "true"
    if s.entrypoint:
        env["ALERTFILTER_ENTRYPOINT"] = s.entrypoint
    if s.exactlyOnce:
        env["ALERTFILTER_EXACTLY_ONCE"] = "true"
    if schema_registry:
        env["ALERTFILTER_SCHEMA_REGISTRY"] = schema_registry
    elif schema_dir:
        env["ALERTFILTER_SCHEMA_DIR"] = schema_dir
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
