"""Kafka administration helpers used by the tools (not by the runner, which never creates topics)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    kafka_config: dict[str, str] | None = None,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create each ``topic: partitions`` that does not exist yet (replication factor 1 or the broker default).

    Raises:
        KafkaException: creation failed for a reason other than the topic existing.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4, **(kafka_config or {})})
    existing = admin.list_topics(timeout=timeout_s).topics
    new = [
        NewTopic(t, num_partitions=p, config=dict(config or {"max.message.bytes": str(16 * 1024 * 1024)}))
        for t, p in topics.items()
        if t not in existing
    ]
    if not new:
        return
    for fut in admin.create_topics(new, operation_timeout=timeout_s).values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
