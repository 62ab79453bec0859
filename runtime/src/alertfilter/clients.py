"""The runner's Kafka clients: their settings, and their construction (the CLI builds them and
hands them to :class:`alertfilter.runner.Runner`, so that tests can hand it fakes).

The clients' statistics and error callbacks go to a :class:`ClientEvents`, which updates the lag
metric, logs errors (at most every 30 s per kind) and sets the runner's stop flag on a fatal one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from .metrics import RunnerMetrics
from .settings import RunnerSettings

log = logging.getLogger("alertfilter.runner")

#: A killed runner's partitions move to a live one after this long, ms; librdkafka's 45 s default
#: would eat most of the 60 s delivery budget (DMTN-102).
SESSION_TIMEOUT_MS = 10_000
#: How often a repeated client error of one kind is logged at warning level, s.
ERROR_LOG_INTERVAL_S = 30.0


class StartupError(RuntimeError):
    """The runner cannot start with its settings (a port in use, an invalid Kafka setting); ``str()`` says why."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The :class:`KafkaError` a :class:`KafkaException` carries, or None."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def describe_kafka(exc: BaseException) -> str:
    """A one-line description of a Kafka client exception."""
    err = kafka_error(exc)
    if err is not None:
        return str(err.str() or err)
    return str(exc)


class ClientEvents:
    """Receives the clients' callbacks.

    Args:
        metrics: where the consumer lag goes. stop: set on a fatal client error.
    """

    def __init__(self, metrics: RunnerMetrics, stop: threading.Event) -> None:
        self.metrics = metrics
        self.stop = stop
        self._logged: dict[int, float] = {}

    def on_stats(self, stats_json: str) -> None:
        """librdkafka statistics (JSON): the consumer lag of each partition."""
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for part, ps in t.get("partitions", {}).items():
                    if part != "-1" and ps.get("consumer_lag", -1) >= 0:
                        self.metrics.lag.labels(topic, part).set(ps["consumer_lag"])
        except (ValueError, AttributeError):
            log.debug("unreadable client statistics")

    def on_error(self, err: KafkaError) -> None:
        """A client error: fatal ones stop the runner; a broker away repeats these many times a second."""
        if err.fatal():
            log.error("fatal Kafka client error: %s", err)
            self.stop.set()
            return
        now = time.monotonic()
        if now - self._logged.get(err.code(), -1e9) >= ERROR_LOG_INTERVAL_S:
            self._logged[err.code()] = now
            log.warning("Kafka client error: %s", err)
        else:
            log.debug("Kafka client error: %s", err)


@dataclass
class KafkaClients:
    """The runner's consumer and producer (any objects with their methods: tests pass fakes)."""

    consumer: Any
    producer: Any


def consumer_config(s: RunnerSettings, events: ClientEvents) -> dict[str, Any]:
    """The consumer's librdkafka settings."""
    return {
        "bootstrap.servers": s.bootstrap_servers,
        **s.kafka_config,
        "group.id": s.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "max.poll.interval.ms": s.max_poll_interval_ms,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 3_000,
        "statistics.interval.ms": 5000,
        "stats_cb": events.on_stats,
        "error_cb": events.on_error,
    }


def producer_config(s: RunnerSettings, events: ClientEvents) -> dict[str, Any]:
    """The producer's librdkafka settings (idempotent, ``acks=all``; transactional with exactly-once)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        **s.kafka_config,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 10,
        "message.max.bytes": s.max_message_bytes,
        "error_cb": events.on_error,
    }
    if s.exactly_once:
        conf["transactional.id"] = s.transactional()
    return conf


def make_clients(s: RunnerSettings, events: ClientEvents) -> KafkaClients:
    """The runner's real Kafka clients.

    Raises:
        StartupError: a client cannot be created with these settings (an invalid ``-X``).
    """
    try:
        consumer = Consumer(consumer_config(s, events))
    except (KafkaException, ValueError, TypeError) as exc:
        raise StartupError(f"invalid Kafka consumer setting: {describe_kafka(exc)}") from None
    try:
        producer = Producer(producer_config(s, events))
    except (KafkaException, ValueError, TypeError) as exc:
        consumer.close()
        raise StartupError(f"invalid Kafka producer setting: {describe_kafka(exc)}") from None
    return KafkaClients(consumer, producer)
