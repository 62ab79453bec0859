"""The runner's Kafka clients: their settings, their construction (the CLI builds them and hands
them to :class:`alertfilter.runner.Runner`, so that tests can hand it fakes), and the two questions
the runner asks the cluster besides consuming: do the topics exist, has the group read everything.

The clients' statistics and error callbacks go to a :class:`ClientEvents`, which updates the lag
metric, logs errors (at most every 30 s per kind) and sets the runner's stop flag on a fatal one.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from .metrics import HealthServer, Heartbeat, RunnerMetrics
from .runstatus import RunnerStatus
from .settings import RunnerSettings

log = logging.getLogger("alertfilter.runner")

#: A killed runner's partitions move to a live one after this long, ms; librdkafka's 45 s default
#: would eat most of the 60 s delivery budget (DMTN-102).
SESSION_TIMEOUT_MS = 10_000
#: How often a repeated client error of one kind is logged at warning level, s.
ERROR_LOG_INTERVAL_S = 30.0

#: The consumer's fetch sizes and the producer's batching, chosen from measurements on real Rubin
#: alerts (108-265 KB each; bench/RESULTS.md, issue #13). Each can be overridden with ``-X``.
CONSUMER_TUNING: dict[str, Any] = {
    # librdkafka's 1 MiB per partition per fetch is ~9 alerts: the consumer then lives on round
    # trips. 16 MiB (~150 alerts) per partition and 64 MiB per request: a bare consume loop on
    # one partition went from 620-1,700 to 1,750-2,540 alerts/s (issue #13); the prefetch queue
    # stays at librdkafka's 64 MiB (queued.max.messages.kbytes), well inside a pod's 1.5 GiB.
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "fetch.max.bytes": 64 * 1024 * 1024,
    # 64 MiB of prefetched alerts is only ~600 of them, so the queue is "full" at every batch, and
    # librdkafka then postpones the next fetch by fetch.queue.backoff.ms (1 s by default): the
    # runner's consume() waited 0.5-0.8 s every ~1,600 alerts. At 10 ms the runner went from
    # 1,011 to 2,057 alerts/s on 10,000 real alerts (consume() traced per call; bench/RESULTS.md).
    "fetch.queue.backoff.ms": 10,
}
PRODUCER_TUNING: dict[str, Any] = {
    # lz4: alerts compress (their cutouts are uncompressed FITS: 1.9-2.1x with zlib), so the
    # output topic, its replicas and its mirror carry fewer bytes. A bare producer sent 3,000 real
    # alerts at 1,524-1,600/s with lz4 against 1,077-1,094 uncompressed and 835-948 with zstd (CPU
    # in librdkafka's own thread); the runner ran at the same rate either way (2,027 and 2,021/s).
    "compression.type": "lz4",
    # Records are 100+ KB, so librdkafka's 1 MB batches fill in a few ms at survey rates: a longer
    # linger buys nothing, a shorter one sends half-empty requests. batch.size stays at its
    # default, which must not exceed the output topic's max.message.bytes (the broker refuses
    # whole batches over it).
    "linger.ms": 10,
    # The loop keeps at most 4 batches in flight (runner.MAX_BATCHES_IN_FLIGHT); this bounds the
    # producer's copy of them (librdkafka's default is 1 GiB) inside the pod's memory limit; a
    # full queue makes the sink wait for acknowledgements, never fail.
    "queue.buffering.max.kbytes": 256 * 1024,
}


class TopicsMissing(RuntimeError):
    """A topic the runner needs does not exist."""


class BrokersUnreachable(RuntimeError):
    """The Kafka brokers could not be reached at start."""


class StartupError(RuntimeError):
    """The runner cannot start with its settings (a port in use, an invalid Kafka setting); ``str()`` says why."""


def serve_health(
    port: int,
    metrics: RunnerMetrics,
    alive: Callable[[], bool],
    ready: Callable[[], bool],
    status: RunnerStatus | None = None,
) -> HealthServer:
    """Start /metrics, /healthz, /readyz and /status on ``port`` (:class:`HealthServer`).

    Raises:
        StartupError: the port is in use or cannot be served.
    """
    try:
        health = HealthServer(port, metrics, alive, ready, status=status).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} is in use; pass --metrics-port (another port, or -1 for no metrics server)"
            ) from None
        raise StartupError(f"cannot serve metrics on port {port}: {exc.strerror}") from None
    log.info("metrics and health on port %d", health.port)
    return health


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
        metrics: where the consumer lag goes (and ``status``, per assigned partition, when given).
        stop: set on a fatal client error.
    """

    def __init__(self, metrics: RunnerMetrics, stop: threading.Event, status: RunnerStatus | None = None) -> None:
        self.metrics = metrics
        self.stop = stop
        self.status = status
        self._logged: dict[int, float] = {}

    def on_stats(self, stats_json: str) -> None:
        """librdkafka statistics (JSON): the consumer lag of each partition."""
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for part, ps in t.get("partitions", {}).items():
                    if part != "-1" and ps.get("consumer_lag", -1) >= 0:
                        self.metrics.lag.labels(topic, part).set(ps["consumer_lag"])
                        if self.status is not None:
                            self.status.update_partition(topic, int(part), lag=int(ps["consumer_lag"]))
        except (ValueError, AttributeError):
            log.debug("unreadable client statistics")

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The outcome of an offset commit. The runner commits asynchronously as outputs are
        acknowledged: a failed commit is made good by the next one (offsets only grow), or the
        partition's next owner reads those messages again (at-least-once); a fatal one stops the runner."""
        failed = err if err is not None else next((tp.error for tp in partitions if tp.error is not None), None)
        if failed is None:
            return
        if failed.fatal():
            log.error("fatal error committing offsets: %s", failed)
            self.stop.set()
        else:
            log.warning("could not commit offsets (%s); the next commit carries them", failed)

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
        **CONSUMER_TUNING,
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
        "on_commit": events.on_commit,
    }


def producer_config(s: RunnerSettings, events: ClientEvents) -> dict[str, Any]:
    """The producer's librdkafka settings (idempotent, ``acks=all``; transactional with exactly-once)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        **PRODUCER_TUNING,
        **s.kafka_config,
        "enable.idempotence": True,
        "acks": "all",
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


def group_done(consumer: Any, topic: str) -> bool:
    """True when the group's committed offset of every partition of ``topic`` is at its end."""
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in md.partitions]
        for tp in consumer.committed(parts, timeout=10):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if high > low and tp.offset < high:
                return False
        return True
    except (KafkaException, KeyError) as exc:
        log.warning("cannot read the group's progress: %s", exc)
        return False


def wait_for_topics(consumer: Any, s: RunnerSettings, stop: threading.Event, heartbeat: Heartbeat) -> None:
    """Wait up to ``topic_wait_s`` for every topic the runner reads or writes (beating ``heartbeat``).

    Raises:
        BrokersUnreachable: no broker answered in that time.
        TopicsMissing: naming the topics still missing.
    """
    needed = [s.input_topic, s.output_topic, s.dead_letter_topic, *([s.candidates_topic] if s.candidates_topic else [])]
    deadline = time.monotonic() + s.topic_wait_s
    missing = needed
    reached = False
    last_error = ""
    while not stop.is_set():
        heartbeat.beat()
        try:
            topics = consumer.list_topics(timeout=min(10.0, max(s.topic_wait_s, 1.0))).topics
            reached = True
            missing = [t for t in needed if t not in topics or topics[t].error is not None]
        except KafkaException as exc:
            last_error = describe_kafka(exc)
            log.warning("cannot reach the Kafka brokers at %s: %s", s.bootstrap_servers, last_error)
        if reached and not missing:
            return
        if time.monotonic() >= deadline:
            break
        if reached:
            log.warning("waiting for topic(s) %s on %s", ", ".join(missing), s.bootstrap_servers)
        stop.wait(2.0)
    if stop.is_set() and not (reached and not missing):
        raise TopicsMissing("stopped while waiting for the topics")
    if not reached:
        raise BrokersUnreachable(
            f"cannot reach the Kafka brokers at {s.bootstrap_servers} after "
            f"{s.topic_wait_s:.0f} s ({last_error or 'no answer'}); check "
            "--bootstrap-servers and the network"
        )
    raise TopicsMissing(
        f"topic(s) {', '.join(missing)} do not exist on {s.bootstrap_servers} after "
        f"{s.topic_wait_s:.0f} s; the operator creates them (KafkaTopic resources), or create "
        "them yourself for a local run"
    )
