"""The filter-runner: consume the alert stream, filter, forward accepted alerts.

Delivery guarantees:

- At-least-once (default): input offsets are committed per batch, synchronously, only after every
  record produced from that batch (outputs and dead letters) is acknowledged by the broker
  (``acks=all``, idempotent producer). A crash replays at most the uncommitted batch.
- Exactly-once (``exactly_once=True``): each batch is one Kafka transaction holding its outputs,
  dead letters and input offsets (``send_offsets_to_transaction``); consumers of the output topic
  that read with ``isolation.level=read_committed`` see every accepted alert once.

The per-visit cap's recent counts travel with the committed offsets (offset metadata), so a
restarted runner keeps the cap exact for the visits in flight.

Accepted alerts are forwarded with their original value bytes, key and headers, never re-encoded,
plus provenance headers ``alertfilter.filter``, ``alertfilter.source-sha256`` and ``alertfilter.visit``.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .metrics import HealthServer, Heartbeat, RunnerMetrics
from .processor import ACCEPTED, CAPPED, ERROR, REASON_TOO_LARGE, REJECTED, AlertProcessor, Outcome

log = logging.getLogger("alertfilter.runner")

#: Default largest record the runner produces, bytes. Rubin alerts are 50-250 KB (DMTN-102); the
#: operator sets the output topic's ``max.message.bytes`` to the same figure.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

H_FILTER = "alertfilter.filter"
H_SHA = "alertfilter.source-sha256"
H_VISIT = "alertfilter.visit"
H_REASON = "alertfilter.error.reason"
H_MESSAGE = "alertfilter.error.message"
H_SRC_TOPIC = "alertfilter.source.topic"
H_SRC_PARTITION = "alertfilter.source.partition"
H_SRC_OFFSET = "alertfilter.source.offset"
H_ALERT_ID = "alertfilter.alert-id"


class TopicsMissing(RuntimeError):
    """A topic the runner needs does not exist."""


class DeliveryFailed(RuntimeError):
    """A produced record was not acknowledged; the batch's offsets were not committed."""


@dataclass
class RunnerConfig:
    """Settings of one runner.

    Attributes:
        bootstrap_servers: Kafka bootstrap list, ``host:port[,...]``.
        input_topic: the full alert stream (mirrored) topic.
        output_topic: where accepted alerts go.
        dead_letter_topic: where alerts that could not be filtered go, with the reason in headers.
        group_id: consumer group of this filter.
        batch_size: messages per consume call and per commit/transaction.
        exactly_once: use Kafka transactions.
        transactional_id: transactional id (exactly-once); default ``alertfilter-<group>-<hostname>``.
        max_message_bytes: largest record produced, bytes; larger outputs go to the dead-letter
            topic without their value.
        max_poll_interval_ms: the consumer's ``max.poll.interval.ms``; must exceed
            ``batch_size * filter_timeout_s`` plus a 30 s margin so one slow filter never breaks it.
        metrics_port: HTTP port of /metrics, /healthz, /readyz; None for no server.
        topic_wait_s: how long to wait at start for the input, output and dead-letter topics to
            exist (the operator creates them as Strimzi KafkaTopics), s.
        exit_when_idle_s: exit 0 after this long with every assigned partition at its end (tests,
            demos, backfills); None to run until SIGTERM.
        kafka_config: extra librdkafka settings for both clients (security, timeouts...).
    """

    bootstrap_servers: str
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    group_id: str
    batch_size: int = 200
    poll_timeout_s: float = 0.5
    exactly_once: bool = False
    transactional_id: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_poll_interval_ms: int = 300_000
    metrics_port: int | None = None
    exit_when_idle_s: float | None = None
    liveness_window_s: float = 60.0
    topic_wait_s: float = 120.0
    kafka_config: dict[str, str] = field(default_factory=dict)

    def validate(self, filter_timeout_s: float) -> None:
        """Raises ValueError when the settings cannot work together."""
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.input_topic in (self.output_topic, self.dead_letter_topic):
            raise ValueError(f"the input topic {self.input_topic!r} cannot also be the output or dead-letter topic")
        worst_ms = self.batch_size * filter_timeout_s * 1000 + 30_000
        if filter_timeout_s and worst_ms >= self.max_poll_interval_ms:
            raise ValueError(
                f"batch size {self.batch_size} x filter timeout {filter_timeout_s:g} s (+30 s) = {worst_ms / 1000:.0f} s "
                f"reaches max.poll.interval.ms ({self.max_poll_interval_ms / 1000:.0f} s): a slow filter would get "
                "the consumer evicted from its group; lower --batch-size or --filter-timeout")


class Runner:
    """Runs one filter against the input topic until stopped.

    Args:
        config: the runner's settings.
        processor: decides each alert's fate.
        metrics: counters to update (a fresh :class:`RunnerMetrics` when None).
    """

    def __init__(self, config: RunnerConfig, processor: AlertProcessor, metrics: RunnerMetrics | None = None) -> None:
        config.validate(processor.filter_timeout_s)
        self.config = config
        self.processor = processor
        self.metrics = metrics or RunnerMetrics()
        self.heartbeat = Heartbeat(config.liveness_window_s)
        self._stop = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._eof: set[tuple[str, int]] = set()
        self._failed: list[tuple[KafkaError, Message]] = []
        self._headers_base = [(H_FILTER, processor.filter.name.encode()), (H_SHA, processor.filter.source_sha256.encode())]
        self.health: HealthServer | None = None
        #: Totals of this process: consumed, accepted (acknowledged), rejected, capped, errors, dead_letters.
        self.totals: dict[str, int] = dict.fromkeys(("consumed", "accepted", "rejected", "capped", "errors",
                                                    "dead_letters"), 0)
        common = {"bootstrap.servers": config.bootstrap_servers, **config.kafka_config}
        self.consumer = Consumer({
            **common,
            "group.id": config.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "max.poll.interval.ms": config.max_poll_interval_ms,
            # A killed runner's partitions move to a live one after this long; librdkafka's 45 s
            # default would eat most of the 60 s delivery budget (DMTN-102).
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            "statistics.interval.ms": 5000,
            "stats_cb": self._on_stats,
            "error_cb": self._on_client_error,
        })
        pconf: dict[str, Any] = {
            **common,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 10,
            "message.max.bytes": config.max_message_bytes,
            "error_cb": self._on_client_error,
        }
        if config.exactly_once:
            pconf["transactional.id"] = config.transactional_id or f"alertfilter-{config.group_id}-{socket.gethostname()}"
        self.producer = Producer(pconf)

    # --- callbacks -------------------------------------------------------------------------
    def _on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for p, ps in t.get("partitions", {}).items():
                    if p != "-1" and ps.get("consumer_lag", -1) >= 0:
                        self.metrics.lag.labels(topic, p).set(ps["consumer_lag"])
        except (ValueError, AttributeError):
            log.debug("unreadable client statistics")

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal Kafka client error: %s", err)
            self._stop.set()
        else:
            log.warning("Kafka client error: %s", err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        if self.processor.cap.max_per_visit is not None and partitions:
            try:
                committed = consumer.committed(partitions, timeout=10)
                self.processor.cap.restore(p.metadata for p in committed if p.metadata)
            except KafkaException as exc:
                log.warning("could not read the committed cap state: %s", exc)
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._assigned.discard((p.topic, p.partition))
            self._eof.discard((p.topic, p.partition))
        log.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    # --- public ------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Ask the loop to finish its batch, commit, and return (safe from a signal handler)."""
        self._stop.set()

    def ready(self) -> bool:
        """True while partitions are assigned."""
        return bool(self._assigned)

    def run(self) -> int:
        """Run until :meth:`stop`, SIGTERM/SIGINT, a fatal client error or idleness.

        Returns:
            0 on a clean stop.

        Raises:
            DeliveryFailed: a record was not acknowledged (nothing of the batch was committed).
            KafkaException: a transaction failed (it was aborted; nothing of the batch is visible).
        """
        cfg = self.config
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if cfg.metrics_port is not None:
            self.health = HealthServer(cfg.metrics_port, self.metrics, self.heartbeat.alive, self.ready).start()
            log.info("metrics and health on port %d", self.health.port)
        self._wait_for_topics()
        if cfg.exactly_once:
            self.producer.init_transactions(60)
        self.consumer.subscribe([cfg.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        last_data = time.monotonic()
        try:
            while not self._stop.is_set():
                self.heartbeat.beat()
                msgs = self.consumer.consume(cfg.batch_size, cfg.poll_timeout_s)
                self.producer.poll(0)
                batch: list[Message] = []
                for m in msgs:
                    err = m.error()
                    if err is None:
                        batch.append(m)
                        self._eof.discard((m.topic(), m.partition()))
                    elif err.code() == KafkaError._PARTITION_EOF:
                        self._eof.add((m.topic(), m.partition()))
                    elif err.fatal():
                        raise KafkaException(err)
                    else:
                        log.warning("consumer error: %s", err)
                if batch:
                    self._process_batch(batch)
                    last_data = time.monotonic()
                elif (cfg.exit_when_idle_s is not None and self._assigned and self._assigned <= self._eof
                      and time.monotonic() - last_data >= cfg.exit_when_idle_s):
                    if self._group_done():
                        log.info("the group has processed every partition of %s and this runner was idle for %.0f s; "
                                 "exiting", cfg.input_topic, cfg.exit_when_idle_s)
                        break
                    last_data = time.monotonic()
        finally:
            self._shutdown()
        return 0

    # --- internals ---------------------------------------------------------------------------
    def _group_done(self) -> bool:
        """True when the group's committed offset of every input partition is at its end."""
        topic = self.config.input_topic
        try:
            md = self.consumer.list_topics(topic, timeout=10).topics[topic]
            parts = [TopicPartition(topic, p) for p in md.partitions]
            for tp in self.consumer.committed(parts, timeout=10):
                low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
                if high > low and tp.offset < high:
                    return False
            return True
        except (KafkaException, KeyError) as exc:
            log.warning("cannot read the group's progress: %s", exc)
            return False

    def _wait_for_topics(self) -> None:
        """Wait up to ``topic_wait_s`` for every topic the runner reads or writes.

        Raises:
            TopicsMissing: naming the topics still missing.
        """
        cfg = self.config
        needed = [cfg.input_topic, cfg.output_topic, cfg.dead_letter_topic]
        deadline = time.monotonic() + cfg.topic_wait_s
        missing = needed
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                topics = self.consumer.list_topics(timeout=10).topics
                missing = [t for t in needed if t not in topics or topics[t].error is not None]
            except KafkaException as exc:
                log.warning("cannot list topics on %s: %s", cfg.bootstrap_servers, exc)
            if not missing:
                return
            if time.monotonic() >= deadline:
                break
            log.warning("waiting for topic(s) %s on %s", ", ".join(missing), cfg.bootstrap_servers)
            self._stop.wait(2.0)
        raise TopicsMissing(f"topic(s) {', '.join(missing)} do not exist on {cfg.bootstrap_servers} after "
                            f"{cfg.topic_wait_s:.0f} s; the operator creates them (KafkaTopic resources), or create "
                            "them yourself for a local run")

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]],
                 origin: Message) -> None:
        def on_delivery(err: KafkaError | None, msg: Message, origin: Message = origin) -> None:
            if err is not None:
                self._failed.append((err, origin))
            elif msg.topic() == self.config.output_topic:
                self.metrics.accepted.inc()  # counted once acknowledged
                self.totals["accepted"] += 1

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.5)

    def _dead_letter(self, m: Message, reason: str, message: str, alert_id: Any, keep_value: bool = True) -> None:
        headers = list(m.headers() or []) + self._headers_base + [
            (H_REASON, reason.encode()),
            (H_MESSAGE, message.encode("utf-8", "replace")[:2000]),
            (H_SRC_TOPIC, m.topic().encode()),
            (H_SRC_PARTITION, str(m.partition()).encode()),
            (H_SRC_OFFSET, str(m.offset()).encode()),
        ]
        if alert_id is not None:
            headers.append((H_ALERT_ID, str(alert_id).encode()))
        log.warning("dead letter: reason=%s topic=%s partition=%d offset=%d alert_id=%s: %s",
                    reason, m.topic(), m.partition(), m.offset(), alert_id, message)
        self._produce(self.config.dead_letter_topic, m.value() if keep_value else None, m.key(), headers, m)
        self.metrics.dead_letters.inc()
        self.totals["dead_letters"] += 1

    def _forward(self, m: Message, oc: Outcome) -> None:
        headers = list(m.headers() or []) + self._headers_base + [(H_VISIT, str(oc.visit).encode())]
        try:
            self._produce(self.config.output_topic, m.value(), m.key(), headers, m)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            self._too_large(m, oc.alert_id)

    def _too_large(self, m: Message, alert_id: Any) -> None:
        self.metrics.errors.labels(REASON_TOO_LARGE).inc()
        self.totals["errors"] += 1
        size = len(m.value() or b"")
        self._dead_letter(m, REASON_TOO_LARGE, f"accepted alert of {size} bytes exceeds the producer's maximum "
                          f"message size ({self.config.max_message_bytes} bytes) or the output topic's "
                          "max.message.bytes", alert_id, keep_value=False)

    def _handle(self, m: Message) -> None:
        mt, totals = self.metrics, self.totals
        mt.consumed.inc()
        totals["consumed"] += 1
        oc = self.processor.process(m.value())
        if oc.filter_seconds:
            mt.filter_seconds.observe(oc.filter_seconds)
        if oc.kind == ACCEPTED:
            self._forward(m, oc)
        elif oc.kind == REJECTED:
            mt.rejected.inc()
            totals["rejected"] += 1
        elif oc.kind == CAPPED:
            mt.capped.inc()
            totals["capped"] += 1
        elif oc.kind == ERROR:
            mt.errors.labels(oc.reason).inc()
            totals["errors"] += 1
            self._dead_letter(m, oc.reason, oc.message, oc.alert_id)

    def _settle(self) -> None:
        """Wait for every delivery report; route too-large rejections to the dead-letter topic.

        Raises:
            DeliveryFailed: any other delivery error.
        """
        for _ in range(3):
            while self.producer.flush(10) > 0:
                log.warning("waiting for the broker to acknowledge produced records")
                if self._stop.is_set() and self.producer.flush(30) > 0:
                    raise DeliveryFailed("records still unacknowledged after SIGTERM; not committing")
            failed, self._failed = self._failed, []
            if not failed:
                return
            for err, origin in failed:
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    self._too_large(origin, None)
                else:
                    raise DeliveryFailed(f"record from {origin.topic()}[{origin.partition()}]@{origin.offset()} "
                                         f"not delivered: {err}")
        raise DeliveryFailed("dead-letter records could not be delivered")

    def _offsets(self, batch: list[Message]) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            k = (m.topic(), m.partition())
            last[k] = max(last.get(k, -1), m.offset())
        meta = self.processor.cap.snapshot() if self.processor.cap.max_per_visit is not None else None
        return [TopicPartition(t, p, o + 1, meta) if meta else TopicPartition(t, p, o + 1)
                for (t, p), o in last.items()]

    def _process_batch(self, batch: list[Message]) -> None:
        if self.config.exactly_once:
            self.producer.begin_transaction()
            try:
                for m in batch:
                    self._handle(m)
                self._settle()
                self.producer.send_offsets_to_transaction(self._offsets(batch), self.consumer.consumer_group_metadata(), 30)
                self.producer.commit_transaction(60)
            except Exception:
                log.exception("transaction failed; aborting it (no output of this batch becomes visible)")
                try:
                    self.producer.abort_transaction(30)
                except KafkaException as exc:
                    log.error("abort failed: %s", exc)
                raise
            return
        for m in batch:
            self._handle(m)
        self._settle()
        self.consumer.commit(offsets=self._offsets(batch), asynchronous=False)

    def _shutdown(self) -> None:
        try:
            self.producer.flush(30)
        finally:
            try:
                self.consumer.close()
            finally:
                if self.health is not None:
                    self.health.stop()
        log.info("stopped; totals %s", json.dumps(self.totals))
