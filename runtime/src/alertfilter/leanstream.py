"""The lean producer: a pool's full alert stream copied to its lean topic with the cutouts null.

``alertfilter lean`` (:mod:`alertfilter.cli.lean`) runs :class:`LeanProducer`: it consumes the
mirrored full stream (its own consumer group), splices each message (:mod:`alertfilter.lean`: the
same writer schema and schema id, the cutout fields null, nothing decoded) and produces it to the
lean topic, to the same partition as the input partition, with the same key and the original
headers plus three naming the source (``alertfilter.lean.source-topic``, ``-partition``,
``-offset``), which a runner reading the lean topic uses to fetch the original of an accepted
alert (:mod:`alertfilter.originals`).

Delivery is at-least-once, as the runner's: a batch's offsets are committed only once every one of
its records is acknowledged (:class:`~alertfilter.ledger.Ledger`, oldest first), so a crash
replays, never skips. A message that cannot be spliced (not Confluent-framed, a schema whose
cutouts are not nullable, an unknown schema id, a corrupt body) is never dropped and never stops
the producer: it is forwarded whole, with its reason in ``alertfilter.lean.unspliced``. A filter
reading the lean topic then sees exactly what it would have seen on the full stream (an alert it
can decode, or a dead letter for the very same reason).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from .clients import StartupError, group_done, wait_for_topics
from .lean import (
    H_LEAN_OFFSET,
    H_LEAN_PARTITION,
    H_LEAN_PREFIX,
    H_LEAN_TOPIC,
    H_LEAN_UNSPLICED,
    NotSpliceable,
    Splicer,
    splice_confluent,
)
from .ledger import InFlight, Ledger, merged_offsets
from .metrics import HealthServer, Heartbeat
from .schemas import FAILURE_TTL_S, SchemaNotFound, SchemaSource, SchemaSourceError
from .settings import RunnerSettings

log = logging.getLogger("alertfilter.lean")

#: Batches produced and not all acknowledged before the loop waits for the broker (as the runner's).
MAX_BATCHES_IN_FLIGHT = 4


class LeanMetrics:
    """The lean producer's metrics, in their own registry.

    ``alertfilter_lean_alerts_in_total``, ``alertfilter_lean_alerts_out_total`` (acknowledged),
    ``alertfilter_lean_bytes_in_total``, ``alertfilter_lean_bytes_out_total`` (message values, bytes),
    ``alertfilter_lean_unspliced_total{reason}`` (forwarded whole), ``alertfilter_lean_consumer_lag{topic,partition}``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alerts_in = Counter("alertfilter_lean_alerts_in", "Alerts consumed from the full stream.", registry=r)
        self.alerts_out = Counter(
            "alertfilter_lean_alerts_out", "Alerts written to the lean topic and acknowledged.", registry=r
        )
        self.bytes_in = Counter("alertfilter_lean_bytes_in", "Bytes of the values consumed, bytes.", registry=r)
        self.bytes_out = Counter(
            "alertfilter_lean_bytes_out", "Bytes of the values written and acknowledged, bytes.", registry=r
        )
        self.unspliced = Counter(
            "alertfilter_lean_unspliced",
            "Alerts forwarded whole to the lean topic because they could not be spliced, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in UNSPLICED_REASONS:
            self.unspliced.labels(reason)
        self.lag = Gauge(
            "alertfilter_lean_consumer_lag",
            "Messages behind the end of each full-stream partition.",
            ["topic", "partition"],
            registry=r,
        )


#: Why a message goes to the lean topic whole (``alertfilter.lean.unspliced``).
UNSPLICED_REASONS = ("not-confluent", "schema-refused", "unknown-schema", "schema-unavailable", "corrupt")


class DeliveryFailed(RuntimeError):
    """A lean record was not acknowledged; nothing past it was committed."""


class Splicers:
    """The :class:`Splicer` of each schema id, refusals remembered (a schema source that cannot be
    reached is asked again after :data:`FAILURE_TTL_S`)."""

    def __init__(self, schemas: SchemaSource) -> None:
        self.schemas = schemas
        self._by_id: dict[int, Splicer | NotSpliceable] = {}
        self._unavailable: dict[int, float] = {}

    def __call__(self, schema_id: int) -> Splicer:
        """Raises NotSpliceable (its ``reason`` one of :data:`UNSPLICED_REASONS`)."""
        got = self._by_id.get(schema_id)
        if got is None:
            since = self._unavailable.get(schema_id)
            if since is not None and time.monotonic() - since < FAILURE_TTL_S:
                raise NotSpliceable(f"schema id {schema_id} could not be had", "schema-unavailable")
            try:
                writer = self.schemas.get(schema_id)
            except SchemaNotFound as exc:
                got = NotSpliceable(str(exc), "unknown-schema")
            except SchemaSourceError as exc:
                self._unavailable[schema_id] = time.monotonic()
                log.error("schema id %d cannot be had now (%s): its alerts go to the lean topic whole", schema_id, exc)
                raise NotSpliceable(str(exc), "schema-unavailable") from None
            else:
                try:
                    got = Splicer(writer)
                except Exception as exc:  # noqa: BLE001 - any schema it cannot take (nested too deep, a huge fixed...) is refused, never a stopped stream
                    got = NotSpliceable(f"{type(exc).__name__}: {exc}"[:500], "schema-refused")
            if isinstance(got, NotSpliceable):
                log.error("schema id %d: %s; its alerts go to the lean topic whole", schema_id, got)
            self._by_id[schema_id] = got
        if isinstance(got, NotSpliceable):
            raise got
        return got


def lean_value(value: bytes | None, splicers: Callable[[int], Splicer]) -> tuple[bytes | None, str | None]:
    """``(the lean value, None)``, or ``(value, reason)`` when it cannot be spliced (forwarded whole)."""
    try:
        return splice_confluent(value or b"", splicers), None
    except NotSpliceable as exc:
        return value, exc.reason
    except Exception:  # noqa: BLE001 - whatever a body does to the splicer, it is copied whole, never stops the stream
        return value, "corrupt"


def lean_headers(headers: list[tuple[str, bytes | None]] | None, topic: str, partition: int, offset: int) -> list[Any]:
    """The original headers (without any ``alertfilter.lean.*`` one: only the lean producer writes
    those), then the source topic, partition and offset."""
    out: list[Any] = [(k, v) for k, v in headers or [] if not str(k).lower().startswith(H_LEAN_PREFIX)]
    out += [(H_LEAN_TOPIC, topic.encode()), (H_LEAN_PARTITION, str(partition).encode())]
    out.append((H_LEAN_OFFSET, str(offset).encode()))
    return out


class LeanProducer:
    """Copies ``settings.input_topic`` to ``settings.output_topic`` (the lean topic), lean.

    Args:
        settings: the Kafka side (``output_topic`` is the lean topic; ``dead_letter_topic`` unused).
        consumer, producer: the clients (:func:`alertfilter.clients.make_clients`; fakes in tests).
        splicers: the :class:`Splicer` of a schema id (:class:`Splicers`).
        metrics, stop: as the runner's.
    """

    def __init__(
        self,
        settings: RunnerSettings,
        consumer: Any,
        producer: Any,
        splicers: Callable[[int], Splicer],
        metrics: LeanMetrics | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.consumer, self.producer, self.splicers = consumer, producer, splicers
        self.metrics = metrics or LeanMetrics()
        self.heartbeat = Heartbeat(settings.liveness_window())
        self._stop = stop or threading.Event()
        self._ledger = Ledger()
        self._failed: list[str] = []
        self._assigned: set[tuple[str, int]] = set()
        self._eof: set[tuple[str, int]] = set()
        self.health: HealthServer | None = None
        self.totals = dict.fromkeys(("in", "out", "unspliced", "bytes_in", "bytes_out"), 0)

    def stop(self, *_: object) -> None:
        """Stop after the current batch, commit what is acknowledged (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> int:
        """Run until stopped, a fatal error or idleness (``exit_when_idle_s``); 0 on a clean stop.

        Raises:
            TopicsMissing, BrokersUnreachable: as the runner's; PartitionsMismatch: the lean topic has
            fewer partitions than the input; DeliveryFailed: a record was not acknowledged.
        """
        s = self.settings
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        try:
            if s.metrics_port is not None:
                try:
                    # the server only reads ``registry``, which LeanMetrics has as RunnerMetrics does
                    served = cast(Any, self.metrics)
                    self.health = HealthServer(s.metrics_port, served, self.heartbeat.alive, self.ready).start()
                except OSError as exc:
                    raise StartupError(f"cannot serve metrics on port {s.metrics_port}: {exc.strerror}") from None
            wait_for_topics(self.consumer, s, self._stop, self.heartbeat)
            check_partitions(self.consumer, s.input_topic, s.output_topic)
            self.consumer.subscribe([s.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._loop()
        finally:
            try:
                self.producer.flush(30)
            finally:
                self.consumer.close()
                if self.health is not None:
                    self.health.stop()
            log.info("stopped; totals %s", json.dumps(self.totals))
        return 0

    def ready(self) -> bool:
        """True while partitions are assigned."""
        return bool(self._assigned)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._settle()
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._settle()
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
            self._eof.discard((tp.topic, tp.partition))

    def _loop(self) -> None:
        s = self.settings
        last_data = time.monotonic()
        while not self._stop.is_set():
            self.heartbeat.beat()
            msgs = self.consumer.consume(s.batch_size, s.poll_timeout_s)
            batch = []
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
                self.produce_batch(batch)
                last_data = time.monotonic()
                continue
            self._settle()
            quiet = s.exit_when_idle_s is not None and time.monotonic() - last_data >= s.exit_when_idle_s
            if quiet and self._assigned and self._assigned <= self._eof:
                if group_done(self.consumer, s.input_topic):
                    log.info("the group has copied all of %s; exiting", s.input_topic)
                    break
                last_data = time.monotonic()
        self._settle()

    def produce_batch(self, part: list[Any]) -> None:
        """Splice and produce ``part``'s messages; commit, asynchronously, the batches whose records
        are all acknowledged (waiting while :data:`MAX_BATCHES_IN_FLIGHT` are not).

        Raises:
            DeliveryFailed: a record of an earlier batch was not acknowledged.
        """
        while len(self._ledger) >= MAX_BATCHES_IN_FLIGHT and not self._stop.is_set():
            self.heartbeat.beat()
            self.producer.flush(0.1)
            self._commit_acknowledged()
        batch = InFlight(part)
        self._ledger.add(batch)
        mt, totals, topic = self.metrics, self.totals, self.settings.output_topic
        for m in part:
            value = m.value()
            size = len(value or b"")
            mt.alerts_in.inc()
            mt.bytes_in.inc(size)
            totals["in"] += 1
            totals["bytes_in"] += size
            lean, reason = lean_value(value, self.splicers)
            headers = lean_headers(m.headers(), m.topic(), m.partition(), m.offset())
            if reason is not None:
                headers.append((H_LEAN_UNSPLICED, reason.encode()))
                mt.unspliced.labels(reason).inc()
                totals["unspliced"] += 1
            self._produce(topic, lean, m.key(), headers, m.partition(), batch, m)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in _last_offsets(part).items()]
        batch.close(len(part), offsets, OrderedDict())
        self._commit_acknowledged()

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[Any],
        partition: int,
        batch: InFlight,
        m: Any,
    ) -> None:
        size = len(value or b"")

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                self._failed.append(f"{m.topic()}[{m.partition()}]@{m.offset()}: {err}")
                return
            batch.outstanding -= 1
            self.metrics.alerts_out.inc()
            self.metrics.bytes_out.inc(size)
            self.totals["out"] += 1
            self.totals["bytes_out"] += size

        while True:
            try:
                self.producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    partition=partition,
                    on_delivery=on_delivery,
                    **_timestamp(m),
                )
                batch.outstanding += 1
                return
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                self.heartbeat.beat()
                self.producer.poll(0.5)

    def _check_failed(self) -> None:
        if self._failed:
            raise DeliveryFailed(f"lean record not delivered ({len(self._failed)} in all): {self._failed[0]}")

    def _commit_acknowledged(self) -> None:
        self.producer.poll(0)
        self._check_failed()
        done = self._ledger.acknowledged()
        offsets = merged_offsets(done)
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def _settle(self) -> None:
        """Wait for every record in flight, then commit their offsets synchronously."""
        if not len(self._ledger):
            return
        while self.producer.flush(10) > 0:
            self.heartbeat.beat()
            log.warning("waiting for the broker to acknowledge lean records")
            if self._stop.is_set() and self.producer.flush(30) > 0:
                raise DeliveryFailed("lean records still unacknowledged after SIGTERM; not committing")
        self._check_failed()
        offsets = merged_offsets(self._ledger.drain())
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # the next owner copies them again: at-least-once
                log.warning("could not commit offsets (%s); those alerts will be copied again", exc)


def _last_offsets(part: list[Any]) -> dict[tuple[str, int], int]:
    last: dict[tuple[str, int], int] = {}
    for m in part:
        last[(m.topic(), m.partition())] = m.offset()
    return last


class PartitionsMismatch(RuntimeError):
    """The lean topic has fewer partitions than the full stream: an alert could not keep its partition."""


def check_partitions(consumer: Any, full: str, lean: str) -> None:
    """Raises PartitionsMismatch when ``lean`` has fewer partitions than ``full``."""
    topics = consumer.list_topics(timeout=10).topics
    n_full, n_lean = len(topics[full].partitions), len(topics[lean].partitions)
    if n_lean < n_full:
        raise PartitionsMismatch(
            f"the lean topic {lean} has {n_lean} partition(s) and the full stream {full} {n_full}: each alert keeps "
            "its partition, so the lean topic needs at least as many (the FilterPool's spec.lean.partitions)"
        )


def _timestamp(m: Any) -> dict[str, int]:
    """The original record's timestamp for its lean copy, so a filter's ``startFrom``/``replayFrom``
    time (``offsets_for_times``) means the same on the lean topic as on the full one; none when the
    original has none (the broker then stamps the copy)."""
    kind, ms = m.timestamp()
    return {"timestamp": ms} if kind != TIMESTAMP_NOT_AVAILABLE and ms >= 0 else {}
