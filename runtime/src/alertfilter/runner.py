"""The filter-runner: consume the alert stream, filter, forward accepted alerts.

Delivery guarantees:

- At-least-once (default): input offsets are committed per batch, synchronously, only after every
  record produced from that batch (outputs and dead letters) is acknowledged by the broker
  (``acks=all``, idempotent producer). A crash replays at most the uncommitted batch. A commit
  that fails for a reason that is not fatal (the group rebalancing, the coordinator moving, the
  broker briefly away) is logged and the batch is processed again: it is re-delivered.
- Exactly-once (``exactly_once=True``): each batch is one Kafka transaction holding its outputs,
  dead letters and input offsets (``send_offsets_to_transaction``); consumers of the output topic
  that read with ``isolation.level=read_committed`` see every accepted alert once.

The per-visit cap's recent counts travel with the committed offsets (offset metadata, compact
JSON), so a restarted runner keeps the cap exact for the visits in flight. The cap is per runner
process: with several replicas each counts only the alerts it sees.

Accepted alerts are forwarded with their original value bytes, key and headers, never re-encoded,
plus provenance headers ``alertfilter.filter``, ``alertfilter.source-sha256`` and ``alertfilter.visit``.

Between messages the runner checks for SIGTERM: it then settles and commits the messages it has
processed, and returns. A message whose processing outlives the hard limit is handled by the
watchdog (see :mod:`alertfilter.watchdog`): the process ends with exit code 70 after the alert was
dead-lettered, so that the restarted runner goes past it.
"""

from __future__ import annotations

import errno
import faulthandler
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from . import watchdog as wd
from .metrics import HealthServer, Heartbeat, RunnerMetrics
from .processor import ACCEPTED, CAPPED, ERROR, REASON_TIMEOUT, REASON_TOO_LARGE, REJECTED, AlertProcessor, Outcome
from .schemas import SchemaSourceError

log = logging.getLogger("alertfilter.runner")

#: Default largest record the runner produces, bytes. Rubin alerts are 50-250 KB (DMTN-102); the
#: operator sets the output topic's ``max.message.bytes`` to the same figure.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Room kept for headers when a dead letter carries the original value, bytes.
DEAD_LETTER_HEADER_MARGIN = 64 * 1024
#: Exit code of a runner ended by its watchdog (a message past the hard limit).
EXIT_HARD_TIMEOUT = wd.EXIT_HARD_TIMEOUT
#: Attempts, after the first, to decode a batch while the schema source is unusable.
SCHEMA_RETRIES = 5
#: The longest wait between those attempts, s (1, 2, 4, ... up to this).
SCHEMA_BACKOFF_MAX_S = 30.0

H_FILTER = "alertfilter.filter"
H_SHA = "alertfilter.source-sha256"
H_VISIT = "alertfilter.visit"
H_REASON = "alertfilter.error.reason"
H_MESSAGE = "alertfilter.error.message"
H_VALUE_OMITTED = "alertfilter.error.value-omitted"
H_HEADERS_OMITTED = "alertfilter.error.headers-omitted"
H_SRC_TOPIC = "alertfilter.source.topic"
H_SRC_PARTITION = "alertfilter.source.partition"
H_SRC_OFFSET = "alertfilter.source.offset"
H_ALERT_ID = "alertfilter.alert-id"

#: The dead-letter message of an alert whose processing outlived the hard limit.
HARD_TIMEOUT_MESSAGE = "did not return within the hard limit of {limit:g} s; the runner restarts past it"


class TopicsMissing(RuntimeError):
    """A topic the runner needs does not exist."""


class BrokersUnreachable(RuntimeError):
    """The Kafka brokers could not be reached at start."""


class StartupError(RuntimeError):
    """The runner cannot start with its settings (a port in use, an invalid Kafka setting); ``str()`` says why."""


class DeliveryFailed(RuntimeError):
    """A produced record was not acknowledged; the batch's offsets were not committed."""


# --- record formats shared with the watchdog process ---------------------------------------------
def dead_letter_value_limit(max_message_bytes: int) -> int:
    """Largest original value (plus key and headers) a dead letter keeps, bytes: the producer's limit
    less :data:`DEAD_LETTER_HEADER_MARGIN` (at least half the limit)."""
    return max(max_message_bytes - DEAD_LETTER_HEADER_MARGIN, max_message_bytes // 2)


def headers_size(headers: Iterable[tuple[str, bytes | None]]) -> int:
    """Bytes of ``headers`` (names and values)."""
    return sum(len(k) + len(v or b"") for k, v in headers)


def dead_letter_headers(source_headers: list[tuple[str, bytes | None]] | None, base: list[tuple[str, bytes]],
                        reason: str, message: str, topic: str, partition: int, offset: int, alert_id: Any,
                        value_omitted: bool = False) -> list[tuple[str, bytes | None]]:
    """The headers of a dead letter: the source record's own (None to leave them out), then the filter's
    name and hash, the reason, message, source topic/partition/offset, the alert id when known, and
    ``alertfilter.error.value-omitted: true`` (``headers-omitted`` too when the source headers were
    left out)."""
    out: list[tuple[str, bytes | None]] = list(source_headers or []) + list(base) + [
        (H_REASON, reason.encode()),
        (H_MESSAGE, message.encode("utf-8", "replace")[:2000]),
        (H_SRC_TOPIC, topic.encode()),
        (H_SRC_PARTITION, str(partition).encode()),
        (H_SRC_OFFSET, str(offset).encode()),
    ]
    if alert_id is not None and alert_id != "":
        out.append((H_ALERT_ID, str(alert_id).encode("utf-8", "replace")[:1000]))
    if value_omitted:
        out.append((H_VALUE_OMITTED, b"true"))
    if source_headers is None:
        out.append((H_HEADERS_OMITTED, b"true"))
    return out


def encode_commit_metadata(cap_snapshot: str | None, skips: Iterable[int] = ()) -> str | None:
    """The offset metadata committed with a partition's offset.

    ``cap_snapshot`` (:meth:`VisitCap.snapshot`, ``[[visit, count], ...]``) as it is, or, when some
    offsets of the partition must be passed over (``skips``, set by the watchdog process),
    ``{"cap": [...], "skip": [offset, ...]}``. None when there is nothing to record.
    """
    skip = sorted(set(skips))[:32]
    if not skip:
        return cap_snapshot or None
    return '{"cap":' + (cap_snapshot or "[]") + ',"skip":' + json.dumps(skip, separators=(",", ":")) + "}"


def decode_commit_metadata(text: str | None) -> tuple[list[Any] | None, list[int]]:
    """``(cap items or None, offsets to pass over)`` from committed offset metadata; anything
    unreadable (an older runner's format included) gives ``(None, [])``."""
    if not text:
        return None, []
    try:
        data = json.loads(text)
    except ValueError:
        return None, []
    if isinstance(data, list):
        return data, []
    if isinstance(data, dict):
        cap = data.get("cap")
        skips = [s for s in data.get("skip") or [] if isinstance(s, int) and not isinstance(s, bool)] \
            if isinstance(data.get("skip"), list) else []
        return (cap if isinstance(cap, list) else None), skips
    return None, []


@dataclass
class RunnerConfig:
    """Settings of one runner.

    Attributes:
        bootstrap_servers: Kafka bootstrap list, ``host:port[,...]``.
        input_topic: the full alert stream (mirrored) topic.
        output_topic: where accepted alerts go.
        dead_letter_topic: where alerts that could not be filtered go, with the reason in headers.
        group_id: consumer group of this filter.
        batch_size: messages per consume call and per commit/transaction (1 to 100,000).
        exactly_once: use Kafka transactions.
        transactional_id: transactional id (exactly-once); default ``alertfilter-<group>-<hostname>``.
        max_message_bytes: largest record produced, bytes; larger outputs go to the dead-letter
            topic without their value, and so do dead letters larger than it less 64 KiB.
        max_poll_interval_ms: the consumer's ``max.poll.interval.ms``; must exceed
            ``batch_size * filter_timeout_s`` plus a 30 s margin so one slow filter never breaks it.
        metrics_port: HTTP port of /metrics, /healthz, /readyz; None for no server.
        hard_timeout_s: the hard limit of one message's processing, s (0 for none): past it the
            watchdog dead-letters the alert and the process ends with exit code 70. The CLI's
            default is ``max(10 x filter timeout, 10)``.
        liveness_window_s: /healthz fails when no message was processed and the poll loop did not
            turn for this long, s; None for ``max(60, 3 x hard_timeout_s)``.
        watchdog_process: also start the watchdog process (for calls that block the interpreter).
        schema_retries: how many times to retry a batch, with back-off (1, 2, 4... up to 30 s), while
            the schema source is unusable (a malformed schema file, an unreachable registry) before
            giving up with :class:`SchemaSourceError`.
        topic_wait_s: how long to wait at start for the input, output and dead-letter topics to
            exist (the operator creates them as Strimzi KafkaTopics), s.
        exit_when_idle_s: exit 0 after this long with every assigned partition at its end (tests,
            demos, backfills); None to run until SIGTERM.
        log_format: ``text`` or ``json``, for the watchdog process's log lines.
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
    hard_timeout_s: float = 0.0
    liveness_window_s: float | None = None
    watchdog_process: bool = True
    schema_retries: int = SCHEMA_RETRIES
    topic_wait_s: float = 120.0
    log_format: str = "text"
    kafka_config: dict[str, str] = field(default_factory=dict)

    def liveness_window(self) -> float:
        """``liveness_window_s``, or its default ``max(60, 3 x hard_timeout_s)``, s."""
        if self.liveness_window_s is not None:
            return self.liveness_window_s
        return max(60.0, 3 * self.hard_timeout_s)

    def validate(self, filter_timeout_s: float) -> None:
        """Raises ValueError when the settings cannot work together."""
        if not 1 <= self.batch_size <= 100_000:
            raise ValueError(f"batch size must be between 1 and 100000, got {self.batch_size}")
        if self.input_topic in (self.output_topic, self.dead_letter_topic):
            raise ValueError(f"the input topic {self.input_topic!r} cannot also be the output or dead-letter topic")
        if self.hard_timeout_s and filter_timeout_s and self.hard_timeout_s <= filter_timeout_s:
            raise ValueError(f"the filter hard timeout ({self.hard_timeout_s:g} s) must be longer than the filter "
                             f"timeout ({filter_timeout_s:g} s)")
        worst_ms = self.batch_size * filter_timeout_s * 1000 + 30_000
        if filter_timeout_s and worst_ms >= self.max_poll_interval_ms:
            raise ValueError(
                f"batch size {self.batch_size} x filter timeout {filter_timeout_s:g} s (+30 s) = {worst_ms / 1000:.0f} s "
                f"reaches max.poll.interval.ms ({self.max_poll_interval_ms / 1000:.0f} s): a slow filter would get "
                "the consumer evicted from its group; lower --batch-size or --filter-timeout")


def _kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class Runner:
    """Runs one filter against the input topic until stopped.

    Args:
        config: the runner's settings.
        processor: decides each alert's fate.
        metrics: counters to update (a fresh :class:`RunnerMetrics` when None).

    Raises:
        ValueError: settings that cannot work together (:meth:`RunnerConfig.validate`).
        StartupError: a Kafka client cannot be created with these settings (an invalid ``-X``).
    """

    def __init__(self, config: RunnerConfig, processor: AlertProcessor, metrics: RunnerMetrics | None = None) -> None:
        config.validate(processor.filter_timeout_s)
        self.config = config
        self.processor = processor
        self.metrics = metrics or RunnerMetrics()
        self.heartbeat = Heartbeat(config.liveness_window())
        self._stop = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._eof: set[tuple[str, int]] = set()
        self._failed: list[tuple[KafkaError, Message, Callable[[], None] | None]] = []
        self._skips: dict[tuple[str, int], set[int]] = {}
        self._error_logged: dict[int, float] = {}
        self._cap_checkpoint = processor.cap.checkpoint()
        self._headers_base = [(H_FILTER, processor.filter.name.encode()), (H_SHA, processor.filter.source_sha256.encode())]
        self._dead_letter_limit = dead_letter_value_limit(config.max_message_bytes)
        self.health: HealthServer | None = None
        # the watchdog (hard limit of one message)
        self._wd_lock = threading.Lock()
        self._wd_taken = False
        self._wd_t0: float | None = None
        self._wd_part: list[Message] = []
        self._wd_index = 0
        self._wd_seq = 0
        self._wd_starts: dict[tuple[str, int], int] = {}
        self._wd_stop = threading.Event()
        self._wd_thread: threading.Thread | None = None
        self._shm: wd.SharedState | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._deadline: wd.NativeDeadline | None = None
        #: Totals of this process: consumed, accepted (acknowledged), rejected, capped, errors, dead_letters.
        self.totals: dict[str, int] = dict.fromkeys(("consumed", "accepted", "rejected", "capped", "errors",
                                                    "dead_letters"), 0)
        common = {"bootstrap.servers": config.bootstrap_servers, **config.kafka_config}
        cconf: dict[str, Any] = {
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
        }
        pconf: dict[str, Any] = {
            **common,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 10,
            "message.max.bytes": config.max_message_bytes,
            "error_cb": self._on_client_error,
        }
        if config.exactly_once:
            pconf["transactional.id"] = self.transactional_id()
        try:
            self.consumer = Consumer(cconf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise StartupError(f"invalid Kafka consumer setting: {_describe_kafka(exc)}") from None
        try:
            self.producer = Producer(pconf)
        except (KafkaException, ValueError, TypeError) as exc:
            self.consumer.close()
            raise StartupError(f"invalid Kafka producer setting: {_describe_kafka(exc)}") from None

    def transactional_id(self) -> str:
        """The producer's transactional id (``--transactional-id``, default ``alertfilter-<group>-<hostname>``)."""
        return self.config.transactional_id or f"alertfilter-{self.config.group_id}-{socket.gethostname()}"

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
            return
        now = time.monotonic()
        if now - self._error_logged.get(err.code(), -1e9) >= 30.0:  # a broker away repeats these many times a second
            self._error_logged[err.code()] = now
            log.warning("Kafka client error: %s", err)
        else:
            log.debug("Kafka client error: %s", err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        if partitions:
            try:
                committed = consumer.committed(partitions, timeout=10)
            except KafkaException as exc:
                log.warning("could not read the committed offsets' metadata (cap state, alerts to pass over): %s", exc)
                committed = []
            caps = []
            for tp in committed:
                cap_items, skips = decode_commit_metadata(tp.metadata)
                if cap_items is not None:
                    caps.append(cap_items)
                if skips:
                    self._skips.setdefault((tp.topic, tp.partition), set()).update(s for s in skips if s >= tp.offset)
            if caps and self.processor.cap.max_per_visit is not None:
                self.processor.cap.restore(caps)
                self._cap_checkpoint = self.processor.cap.checkpoint()
        if self._shm is not None:
            self._shm.set_cgmd(consumer.consumer_group_metadata())
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._assigned.discard((p.topic, p.partition))
            self._eof.discard((p.topic, p.partition))
            self._skips.pop((p.topic, p.partition), None)
        log.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    # --- public ------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Ask the loop to stop after the current message, commit what it processed, and return
        (safe from a signal handler)."""
        self._stop.set()

    def ready(self) -> bool:
        """True while partitions are assigned."""
        return bool(self._assigned)

    def run(self) -> int:
        """Run until :meth:`stop`, SIGTERM/SIGINT, a fatal client error or idleness.

        Returns:
            0 on a clean stop. (A message past the hard limit ends the process with exit code 70
            from the watchdog; this method does not return then.)

        Raises:
            StartupError: the metrics port is in use.
            BrokersUnreachable: no broker answered within ``topic_wait_s``.
            TopicsMissing: a topic does not exist after ``topic_wait_s``.
            SchemaSourceError: the schema source stayed unusable (a malformed schema, an
                unreachable registry) through every retry; nothing past the failing message was
                dead-lettered or committed.
            DeliveryFailed: a record was not acknowledged (nothing of the batch was committed).
            KafkaException: a fatal client error, or a transaction failed (it was aborted;
                nothing of the batch is visible).
        """
        cfg = self.config
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            if hasattr(signal, "SIGUSR1"):
                faulthandler.register(signal.SIGUSR1, all_threads=True)  # the watchdog asks where a call is stuck
        try:
            if cfg.metrics_port is not None:
                try:
                    self.health = HealthServer(cfg.metrics_port, self.metrics, self.heartbeat.alive, self.ready).start()
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise StartupError(f"port {cfg.metrics_port} is in use; pass --metrics-port "
                                           "(another port, or -1 for no metrics server)") from None
                    raise StartupError(f"cannot serve metrics on port {cfg.metrics_port}: {exc.strerror}") from None
                log.info("metrics and health on port %d", self.health.port)
            self._start_watchdog()
            self._wait_for_topics()
            if cfg.exactly_once:
                self.producer.init_transactions(60)
            self.consumer.subscribe([cfg.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                    on_lost=self._on_revoke)
            self._loop()
        finally:
            self._shutdown()
        return 0

    # --- internals ---------------------------------------------------------------------------
    def _loop(self) -> None:
        cfg = self.config
        last_data = time.monotonic()
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
            BrokersUnreachable: no broker answered in that time.
            TopicsMissing: naming the topics still missing.
        """
        cfg = self.config
        needed = [cfg.input_topic, cfg.output_topic, cfg.dead_letter_topic]
        deadline = time.monotonic() + cfg.topic_wait_s
        missing = needed
        reached = False
        last_error = ""
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                topics = self.consumer.list_topics(timeout=min(10.0, max(cfg.topic_wait_s, 1.0))).topics
                reached = True
                missing = [t for t in needed if t not in topics or topics[t].error is not None]
            except KafkaException as exc:
                last_error = _describe_kafka(exc)
                log.warning("cannot reach the Kafka brokers at %s: %s", cfg.bootstrap_servers, last_error)
            if reached and not missing:
                return
            if time.monotonic() >= deadline:
                break
            if reached:
                log.warning("waiting for topic(s) %s on %s", ", ".join(missing), cfg.bootstrap_servers)
            self._stop.wait(2.0)
        if self._stop.is_set() and not (reached and not missing):
            raise TopicsMissing("stopped while waiting for the topics")
        if not reached:
            raise BrokersUnreachable(f"cannot reach the Kafka brokers at {cfg.bootstrap_servers} after "
                                     f"{cfg.topic_wait_s:.0f} s ({last_error or 'no answer'}); check "
                                     "--bootstrap-servers and the network")
        raise TopicsMissing(f"topic(s) {', '.join(missing)} do not exist on {cfg.bootstrap_servers} after "
                            f"{cfg.topic_wait_s:.0f} s; the operator creates them (KafkaTopic resources), or create "
                            "them yourself for a local run")

    # --- producing -----------------------------------------------------------------------------
    def _produce(self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes | None]],
                 origin: Message, retry: Callable[[], None] | None) -> None:
        """Produce one record; ``retry`` is called instead of failing the batch when the broker
        rejects it as too large (None: that fails the batch).

        Raises:
            KafkaException: the producer refused the record at once (MSG_SIZE_TOO_LARGE...).
        """
        def on_delivery(err: KafkaError | None, msg: Message, origin: Message = origin) -> None:
            if err is not None:
                self._failed.append((err, origin, retry))
            elif msg.topic() == self.config.output_topic:
                self.metrics.accepted.inc()  # counted once acknowledged
                self.totals["accepted"] += 1
            elif msg.topic() == self.config.dead_letter_topic:
                self.metrics.dead_letters.inc()
                self.totals["dead_letters"] += 1

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.heartbeat.beat()
                self.producer.poll(0.5)

    def _dead_letter(self, m: Message, reason: str, message: str, alert_id: Any, keep_value: bool = True,
                     keep_headers: bool = True, attempt: int = 0) -> None:
        """Send ``m`` to the dead-letter topic with the reason in its headers.

        The original value is left out (header ``alertfilter.error.value-omitted: true``) when it
        would not fit the producer's limit less 64 KiB, or when the producer or the broker refuses
        the record as too large; the original headers and key too (``headers-omitted``) when they
        alone are that large.

        Raises:
            KafkaException: the producer refused the record for another reason.
            DeliveryFailed: the record was refused as too large even without its value and headers.
        """
        if attempt > 3:
            raise DeliveryFailed(f"the dead letter of {m.topic()}[{m.partition()}]@{m.offset()} is refused as too "
                                 "large even without its value and headers")
        value = m.value() if keep_value else None
        source_headers = list(m.headers() or []) if keep_headers else None
        key = m.key() if keep_headers else None
        own = len(key or b"") + headers_size(source_headers or [])
        if value is not None and len(value) + own > self._dead_letter_limit:
            value = None
        omitted = value is None and bool(m.value())
        headers = dead_letter_headers(source_headers, self._headers_base, reason, message, m.topic(), m.partition(),
                                      m.offset(), alert_id, omitted)
        if attempt == 0:
            log.warning("dead letter: reason=%s topic=%s partition=%d offset=%d alert_id=%s: %s%s",
                        reason, m.topic(), m.partition(), m.offset(), alert_id, message,
                        " (value left out: too large)" if omitted else "")

        def again() -> None:  # refused as too large: leave out the value, then big headers; else try once more
            if value is not None:
                self._dead_letter(m, reason, message, alert_id, False, keep_headers, attempt + 1)
            elif keep_headers and own > DEAD_LETTER_HEADER_MARGIN:
                self._dead_letter(m, reason, message, alert_id, False, False, attempt + 1)
            else:  # the broker refuses whole batches: a small record may have shared one with a large record
                self._dead_letter(m, reason, message, alert_id, keep_value and value is not None, keep_headers,
                                  attempt + 1)

        try:
            self._produce(self.config.dead_letter_topic, value, key, headers, m, again)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is None or err.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            log.warning("the dead letter of %s[%d]@%d is too large for the producer; sending it without its %s",
                        m.topic(), m.partition(), m.offset(), "value" if value is not None else "headers")
            if value is None and keep_headers:
                self._dead_letter(m, reason, message, alert_id, False, False, attempt + 1)
            else:
                again()

    def _forward(self, m: Message, oc: Outcome) -> None:
        headers = list(m.headers() or []) + self._headers_base + [(H_VISIT, str(oc.visit).encode("utf-8", "replace"))]
        try:
            self._produce(self.config.output_topic, m.value(), m.key(), headers, m,
                          lambda: self._too_large(m, oc.alert_id))
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is None or err.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            self._too_large(m, oc.alert_id)

    def _too_large(self, m: Message, alert_id: Any) -> None:
        self.metrics.errors.labels(REASON_TOO_LARGE).inc()
        self.totals["errors"] += 1
        size = len(m.value() or b"")
        self._dead_letter(m, REASON_TOO_LARGE, f"accepted alert of {size} bytes exceeds the producer's maximum "
                          f"message size ({self.config.max_message_bytes} bytes) or the output topic's "
                          "max.message.bytes", alert_id, keep_value=False)

    # --- one message ---------------------------------------------------------------------------
    def _watch_begin(self, m: Message, now: float) -> None:
        self._wd_seq += 1
        self._wd_t0 = now
        if self._shm is not None:
            key = (m.topic(), m.partition())
            self._shm.begin(self._wd_seq, now, m.partition(), m.offset(), self._wd_starts.get(key, m.offset()))

    def _watch_end(self) -> None:
        with self._wd_lock:
            taken = self._wd_taken or (self._shm is not None and not self._shm.end())
            if not taken:
                self._wd_t0 = None
        if taken:  # a watchdog owns this message now and ends the process
            while True:
                time.sleep(60)

    def _handle(self, m: Message) -> None:
        """Decide and act on one message.

        Raises:
            SchemaSourceError: the message's schema cannot be had now (nothing was done with it).
        """
        mt, totals = self.metrics, self.totals
        now = time.monotonic()
        self.heartbeat.last = now
        skips = self._skips.get((m.topic(), m.partition()))
        if skips and m.offset() in skips:
            mt.consumed.inc()
            totals["consumed"] += 1
            mt.errors.labels(REASON_TIMEOUT).inc()
            totals["errors"] += 1
            log.warning("passing over %s[%d]@%d without calling the filter: it blocked an earlier run past the hard "
                        "limit, and that run's watchdog dead-lettered it", m.topic(), m.partition(), m.offset())
            return
        self._watch_begin(m, now)
        try:
            oc = self.processor.process(m.value())
        finally:
            self._watch_end()
        mt.consumed.inc()
        totals["consumed"] += 1
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

    # --- batches -------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Wait for every delivery report; re-send records the broker refused as too large without
        their value (accepted alerts go to the dead-letter topic instead).

        Raises:
            DeliveryFailed: any other delivery error.
        """
        for _ in range(4):
            while self.producer.flush(10) > 0:
                self.heartbeat.beat()
                log.warning("waiting for the broker to acknowledge produced records")
                if self._stop.is_set() and self.producer.flush(30) > 0:
                    raise DeliveryFailed("records still unacknowledged after SIGTERM; not committing")
            failed, self._failed = self._failed, []
            if not failed:
                return
            for err, origin, retry in failed:
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and retry is not None:
                    log.warning("the broker refused a record from %s[%d]@%d as too large (the topic's "
                                "max.message.bytes); sending it again, smaller", origin.topic(), origin.partition(),
                                origin.offset())
                    retry()
                else:
                    raise DeliveryFailed(f"record from {origin.topic()}[{origin.partition()}]@{origin.offset()} "
                                         f"not delivered: {err}")
        raise DeliveryFailed("dead-letter records could not be delivered")

    def _offsets(self, done: list[Message]) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for m in done:
            k = (m.topic(), m.partition())
            last[k] = max(last.get(k, -1), m.offset())
        cap = self.processor.cap.snapshot() if self.processor.cap.max_per_visit is not None else None
        out = []
        for (t, p), o in last.items():
            meta = encode_commit_metadata(cap, [s for s in self._skips.get((t, p), ()) if s > o])
            out.append(TopicPartition(t, p, o + 1, meta) if meta else TopicPartition(t, p, o + 1))
        return out

    def _committed(self, offsets: list[TopicPartition]) -> None:
        """Bookkeeping after a successful commit: the cap's checkpoint, the offsets passed over."""
        self._cap_checkpoint = self.processor.cap.checkpoint()
        for tp in offsets:
            skips = self._skips.get((tp.topic, tp.partition))
            if skips:
                skips.difference_update([s for s in skips if s < tp.offset])

    def _rewind(self, part: list[Message]) -> None:
        """After a failed commit or an aborted transaction: process ``part`` again (seek back to its
        first offset on each partition still assigned) and forget its cap counts."""
        self.processor.cap.rollback(self._cap_checkpoint)
        first: dict[tuple[str, int], int] = {}
        for m in part:
            first.setdefault((m.topic(), m.partition()), m.offset())
        for (t, p), o in first.items():
            if (t, p) not in self._assigned:
                continue
            try:
                self.consumer.seek(TopicPartition(t, p, o))
            except KafkaException as exc:  # revoked meanwhile: its new owner starts from the committed offset
                log.debug("cannot seek %s[%d] back to %d: %s", t, p, o, exc)

    def _commit(self, part: list[Message], offsets: list[TopicPartition]) -> bool:
        """Commit ``offsets`` (at-least-once). A failure that is not fatal is logged and ``part``
        is processed again; returns False then.

        Raises:
            KafkaException: a fatal error.
        """
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is None or err.fatal():
                raise
            if err.code() == KafkaError.OFFSET_METADATA_TOO_LARGE:
                log.warning("the broker refuses the offset metadata (cap state) as too large "
                            "(offset.metadata.max.bytes); committing without it")
                return self._commit(part, [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in offsets])
            log.warning("could not commit offsets (%s); the batch's %d messages will be processed again "
                        "(at-least-once)", err, len(part))
            self._rewind(part)
            return False
        bad = [tp for tp in result or [] if tp.error is not None]
        if bad:
            if any(tp.error.fatal() for tp in bad):
                raise KafkaException(bad[0].error)
            log.warning("could not commit the offsets of %s (%s); those messages will be processed again",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in bad), bad[0].error)
            self._rewind([m for m in part if any(m.partition() == tp.partition and m.topic() == tp.topic for tp in bad)])
            return False
        self._committed(offsets)
        return True

    def _process_part(self, part: list[Message]) -> tuple[int, SchemaSourceError | None]:
        """Process messages of ``part`` in order until the end, a stop request or a message whose
        schema cannot be had; then settle and commit the processed ones (one transaction with
        exactly-once).

        Returns:
            ``(messages processed, the SchemaSourceError that stopped it or None)``.
        """
        eos = self.config.exactly_once
        self._wd_starts = {}
        for m in part:
            self._wd_starts.setdefault((m.topic(), m.partition()), m.offset())
        if self._shm is not None:
            self._shm.set_cgmd(self.consumer.consumer_group_metadata())
        if eos:
            self.producer.begin_transaction()
        n, error = 0, None
        try:
            self._wd_part = part
            for i, m in enumerate(part):
                if self._stop.is_set():
                    log.info("stopping: %d message(s) of the batch processed, %d left for the next run", i, len(part) - i)
                    break
                self._wd_index = i
                try:
                    self._handle(m)
                except SchemaSourceError as exc:
                    error = exc
                    break
                n += 1
            done = part[:n]
            self._settle()
            if eos:
                self._commit_transaction(part, done)
            elif done:
                self._commit(part, self._offsets(done))
        except Exception:
            if eos:
                log.exception("transaction failed; aborting it (no output of this batch becomes visible)")
                try:
                    self.producer.abort_transaction(30)
                except KafkaException as exc:
                    log.error("abort failed: %s", exc)
            raise
        return n, error

    def _commit_transaction(self, part: list[Message], done: list[Message]) -> None:
        """Add ``done``'s offsets to the open transaction and commit it. A retriable failure is retried;
        an abortable one aborts the transaction and processes ``part`` again.

        Raises:
            KafkaException: a fatal error (the producer was fenced...) or retries exhausted.
        """
        offsets = self._offsets(done) if done else []
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            for attempt in range(3):
                try:
                    self.producer.commit_transaction(60)
                    break
                except KafkaException as exc:
                    err = _kafka_error(exc)
                    if err is None or not err.retriable() or attempt == 2:
                        raise
                    log.warning("committing the transaction failed (%s); retrying", err)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is not None and not err.fatal() and err.txn_requires_abort():
                log.warning("transaction failed (%s); aborting it and processing the batch's %d messages again",
                            err, len(part))
                self.producer.abort_transaction(30)
                self._rewind(part)
                return
            raise
        self._committed(offsets)

    def _process_batch(self, batch: list[Message]) -> None:
        pending = batch
        failures = 0
        while pending and not self._stop.is_set():
            n, error = self._process_part(pending)
            pending = pending[n:]
            if error is None:
                return
            failures = 1 if n else failures + 1
            m = pending[0]
            if failures > self.config.schema_retries:
                raise SchemaSourceError(f"{error} (gave up on {m.topic()}[{m.partition()}]@{m.offset()} after "
                                        f"{failures} attempts; nothing past it was dead-lettered or committed)")
            delay = min(2.0 ** (failures - 1), SCHEMA_BACKOFF_MAX_S)
            log.error("cannot decode %s[%d]@%d: %s; retrying in %.0f s (attempt %d of %d); nothing past it is "
                      "dead-lettered or committed meanwhile", m.topic(), m.partition(), m.offset(), error, delay,
                      failures, self.config.schema_retries)
            end = time.monotonic() + delay
            while not self._stop.is_set() and time.monotonic() < end:
                self.heartbeat.beat()
                self._stop.wait(min(1.0, max(end - time.monotonic(), 0.0)))

    # --- the watchdog ------------------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        hard = self.config.hard_timeout_s
        if not hard:
            return
        self._deadline = wd.NativeDeadline(EXIT_HARD_TIMEOUT)
        self._deadline.arm(hard + wd.DEADLINE_GRACE_S)  # armed before any message: the thread only pushes it back
        if self.config.watchdog_process:
            try:
                self._shm = wd.SharedState()
                self._shm.set_tick(time.monotonic())
                self.processor.on_filter_start = self._shm.set_alert_id
                self._helper = wd.spawn(self._shm, self.helper_config())
            except OSError as exc:
                log.warning("cannot start the watchdog process (%s); a filter call that blocks the interpreter "
                            "will end the runner without a dead letter", exc)
                self._shm = None
                self.processor.on_filter_start = None
        self._wd_thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._wd_thread.start()

    def helper_config(self) -> dict[str, Any]:
        """What the watchdog process needs (JSON-compatible; may hold Kafka credentials)."""
        cfg = self.config
        return {"runner_pid": os.getpid(), "hard_timeout_s": cfg.hard_timeout_s,
                "native_exit": bool(self._deadline and self._deadline.available), "log_format": cfg.log_format,
                "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
                "bootstrap_servers": cfg.bootstrap_servers, "kafka_config": cfg.kafka_config,
                "input_topic": cfg.input_topic, "dead_letter_topic": cfg.dead_letter_topic, "group_id": cfg.group_id,
                "transactional_id": self.transactional_id() + "-watchdog", "max_message_bytes": cfg.max_message_bytes,
                "filter_name": self.processor.filter.name, "filter_sha256": self.processor.filter.source_sha256}

    def _watch(self) -> None:
        """The watchdog thread: ticks, pushes the native deadline back, and takes over a message
        past the hard limit (then ends the process)."""
        hard = self.config.hard_timeout_s
        tick = min(0.5, hard / 10)
        deadline = self._deadline
        while not self._wd_stop.wait(tick):
            now = time.monotonic()
            if self._shm is not None:
                self._shm.set_tick(now)
                if self._shm.state == wd.HELPER_DONE:
                    self._exit(EXIT_HARD_TIMEOUT)
            if deadline is not None:
                deadline.arm(hard + wd.DEADLINE_GRACE_S)
            with self._wd_lock:
                t0 = self._wd_t0
                if t0 is None or now - t0 < hard or self._wd_taken:
                    continue
                if self._shm is not None:
                    if self._shm.state != wd.BUSY:
                        continue  # the watchdog process has it
                    self._shm.state = wd.THREAD
                self._wd_taken = True
                part, index = self._wd_part, self._wd_index
            if deadline is not None:
                deadline.arm(180.0)  # a last resort if what follows hangs
            self._recover(part, index, now - t0)

    def _recover(self, part: list[Message], index: int, elapsed: float) -> None:
        """Dead-letter ``part[index]``, settle, commit ``part[:index + 1]`` and end the process (exit 70)."""
        m = part[index]
        alert_id = self.processor.current_alert_id
        limit = self.config.hard_timeout_s
        try:
            log.error("the filter call on %s[%d]@%d (alert %s) did not return within the hard limit of %g s "
                      "(%.1f s so far); dead-lettering it, committing the batch up to it, and exiting with code %d "
                      "so that the runner restarts past it", m.topic(), m.partition(), m.offset(), alert_id, limit,
                      elapsed, EXIT_HARD_TIMEOUT)
            self.metrics.errors.labels(REASON_TIMEOUT).inc()
            self.totals["errors"] += 1
            self._dead_letter(m, REASON_TIMEOUT, HARD_TIMEOUT_MESSAGE.format(limit=limit), alert_id)
            self._settle()
            offsets = self._offsets(part[:index + 1])
            if self.config.exactly_once:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
                self.producer.commit_transaction(60)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            log.info("committed %s; exiting", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in offsets))
        except BaseException:  # noqa: BLE001 - whatever happened, the process must end now
            log.exception("could not commit past the stuck alert; the restarted runner will meet it again")
        finally:
            self._exit(EXIT_HARD_TIMEOUT)

    def _exit(self, code: int) -> None:
        for h in logging.getLogger().handlers:
            try:
                h.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)

    def _stop_watchdog(self) -> None:
        self._wd_stop.set()
        if self._wd_thread is not None:
            self._wd_thread.join(5)
        if self._deadline is not None:
            self._deadline.disarm()
        if self._helper is not None and self._helper.poll() is None:
            self._helper.terminate()
            try:
                self._helper.wait(5)
            except subprocess.TimeoutExpired:
                self._helper.kill()
        if self._shm is not None:
            self.processor.on_filter_start = None
            self._shm.close()
            self._shm = None

    def _shutdown(self) -> None:
        try:
            self.producer.flush(30)
        finally:
            try:
                self.consumer.close()
            finally:
                self._stop_watchdog()
                if self.health is not None:
                    self.health.stop()
        log.info("stopped; totals %s", json.dumps(self.totals))


def _describe_kafka(exc: BaseException) -> str:
    err = _kafka_error(exc)
    if err is not None:
        return err.str() or str(err)
    return str(exc)


def recover_stuck_message(cfg: dict[str, Any], snap: wd.Snapshot) -> None:
    """The watchdog process's part (see :mod:`alertfilter.watchdog`): with the runner stopped, write
    the dead letter of the message ``snap`` describes and commit, on behalf of the runner's group
    member, the partition's offset where the batch began with the stuck offset marked to be passed
    over. One transaction holds both.

    Raises:
        KafkaException: the transaction failed (then a dead letter is still attempted without it).
    """
    topic, partition, offset = cfg["input_topic"], snap.partition, snap.offset
    limit = float(cfg["hard_timeout_s"])
    log.error("the filter call on %s[%d]@%d (alert %s) did not return within the hard limit of %g s and blocks the "
              "interpreter; the watchdog process dead-letters it and the runner exits with code %d to restart past it",
              topic, partition, offset, snap.alert_id or "unknown", limit, EXIT_HARD_TIMEOUT)
    common = {"bootstrap.servers": cfg["bootstrap_servers"], **cfg.get("kafka_config", {})}
    consumer = Consumer({**common, "group.id": cfg["group_id"], "enable.auto.commit": False,
                         "enable.partition.eof": False, "isolation.level": "read_uncommitted"})
    value = key = None
    source_headers: list[tuple[str, bytes | None]] = []
    meta_text = None
    try:
        committed = consumer.committed([TopicPartition(topic, partition)], timeout=5)
        meta_text = committed[0].metadata if committed else None
        consumer.assign([TopicPartition(topic, partition, offset)])
        for m in consumer.consume(1, 5):
            if m.error() is None and m.offset() == offset:
                value, key, source_headers = m.value(), m.key(), list(m.headers() or [])
    except KafkaException as exc:
        log.warning("could not read the stuck message back (%s); its dead letter goes without its value", exc)
    finally:
        consumer.close()
    limit_bytes = dead_letter_value_limit(int(cfg["max_message_bytes"]))
    if value is not None and len(value) + len(key or b"") + headers_size(source_headers) > limit_bytes:
        value = None
    base = [(H_FILTER, str(cfg["filter_name"]).encode()), (H_SHA, str(cfg["filter_sha256"]).encode())]
    headers = dead_letter_headers(source_headers, base, REASON_TIMEOUT, HARD_TIMEOUT_MESSAGE.format(limit=limit),
                                  topic, partition, offset, snap.alert_id or None, value is None)
    cap_items, skips = decode_commit_metadata(meta_text)
    meta = encode_commit_metadata(json.dumps(cap_items, separators=(",", ":")) if cap_items is not None else None,
                                  [*skips, offset])
    producer = Producer({**common, "transactional.id": cfg["transactional_id"], "enable.idempotence": True,
                         "acks": "all", "message.max.bytes": int(cfg["max_message_bytes"])})
    try:
        producer.init_transactions(8)
        producer.begin_transaction()
        producer.produce(cfg["dead_letter_topic"], value=value, key=key, headers=headers)
        producer.send_offsets_to_transaction([TopicPartition(topic, partition, snap.batch_start, meta)], snap.cgmd, 8)
        producer.commit_transaction(8)
        log.info("dead-lettered %s[%d]@%d and committed offset %d marked to pass over it", topic, partition, offset,
                 snap.batch_start)
    except KafkaException as exc:
        log.error("the watchdog could not commit past %s[%d]@%d (%s; with at-least-once delivery on a secured "
                  "cluster it needs the transactionalId ACL of prefix alertfilter-<group>); writing the dead letter "
                  "alone: the restarted runner will meet the alert again", topic, partition, offset, _describe_kafka(exc))
        plain = Producer({**common, "enable.idempotence": True, "acks": "all",
                          "message.max.bytes": int(cfg["max_message_bytes"])})
        plain.produce(cfg["dead_letter_topic"], value=value, key=key, headers=headers)
        plain.flush(8)
