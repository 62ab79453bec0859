"""The filter-runner's loop: poll → filter (in the filter process) → cap → produce → commit.

Read top to bottom, this module is the hot path of one alert:

1. :meth:`Runner.run` subscribes and turns :meth:`Runner._loop`: ``consume`` a batch of messages;
2. the loop hands the batch's values to the filter process at once
   (:class:`alertfilter.supervisor.FilterProcess`), which decodes each and calls the author's
   filter, and gives one verdict per message back, in order;
3. meanwhile :meth:`Runner._commit_acknowledged` takes the delivery reports that have come and
   commits, asynchronously, the offsets of the earlier batches whose records are all acknowledged
   (:class:`~alertfilter.ledger.Ledger`: oldest first, never past an unacknowledged output);
4. :meth:`Runner._produce` takes the verdicts as they come: :meth:`Runner._handle` applies the
   per-visit cap and gives each message to the :class:`~alertfilter.sink.Sink` (accepted ones to
   the output topic as their original bytes, errors to the dead-letter topic), without waiting
   for their acknowledgements: up to :data:`MAX_BATCHES_IN_FLIGHT` batches are in flight.

So fetching (librdkafka's thread), filtering (the filter process) and sending overlap. The loop
waits for every acknowledgement and commits synchronously (:meth:`Runner._settle_pending`) only
when it idles, stops or its partitions change; a commit refused at once reads the batches in
flight again. With exactly-once each batch is one transaction, committed before the next is produced.

Delivery is at-least-once by default: a crash replays the batches in flight. Between messages the
runner checks for SIGTERM: it then commits the messages it has processed and returns. The filter
process holds no Kafka client and no credential; a filter call past the hard limit, or one that
ends the filter process, becomes a dead letter and a new filter process.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from .cap import VisitCap, checked_visit
from .clients import KafkaClients, group_done, serve_health, wait_for_topics
from .ledger import InFlight, Ledger, merged_offsets
from .limits import LimitGuard
from .metrics import HealthServer, Heartbeat, RunnerMetrics
from .offsets import Offsets
from .originals import Originals
from .outcome import Filters, Kind, Outcome
from .runstatus import RunnerStatus, rfc3339
from .schemas import SchemaSourceError
from .settings import SCHEMA_BACKOFF_MAX_S, RunnerSettings
from .sink import H_FILTER, H_SHA, Sink

log = logging.getLogger("alertfilter.runner")

#: Batches produced and not yet all acknowledged before the loop waits: enough that a batch's
#: acknowledgements arrive while the next ones are sent (bench/RESULTS.md, issue #13), few enough
#: that a crash replays little (batch size x this many messages at most).
MAX_BATCHES_IN_FLIGHT = 4


class Runner:
    """Runs one filter against the input topic until stopped.

    Args:
        settings: the runner's settings (checked by the caller: :meth:`RunnerSettings.validate`).
        clients: the Kafka consumer and producer (:func:`alertfilter.clients.make_clients`).
        filters: the filter process.
        cap: the per-visit cap (``VisitCap(None)`` for none).
        name, source_sha256: the filter's, for the provenance headers.
        metrics: counters to update (a fresh :class:`RunnerMetrics` when None).
        stop: the stop flag (set by SIGTERM, :meth:`stop` and fatal client errors).
        visit_of: reads the visit id of a message value itself (None when it cannot), for the cap:
            the visit of an accepted alert is then never the filter process's word alone.
        status: the status document served on ``/status`` (a fresh :class:`RunnerStatus` when None).
        limits: what may be forwarded a day or a window (``spec.limits``); None for no limit.
    """

    def __init__(
        self,
        settings: RunnerSettings,
        clients: KafkaClients,
        filters: Filters,
        cap: VisitCap,
        name: str,
        source_sha256: str,
        metrics: RunnerMetrics | None = None,
        stop: threading.Event | None = None,
        visit_of: Callable[[bytes | None], Any] | None = None,
        status: RunnerStatus | None = None,
        limits: LimitGuard | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = clients.consumer
        self.producer = clients.producer
        self.filters = filters
        self.cap = cap
        self.visit_of = visit_of
        self.metrics = metrics or RunnerMetrics()
        self.limits = limits or LimitGuard()
        self.metrics.watch_limits(self.limits)
        self.status = status or RunnerStatus()
        self.status.provide("lastAcceptedTime", lambda: rfc3339(t) if (t := self.metrics.last_accepted_at) else None)
        self.status.provide("limits", lambda: self.limits.status() or None)  # the operator's Limited condition
        self.heartbeat = Heartbeat(settings.liveness_window())
        self._stop = stop or threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._joined = False  # an assignment came, maybe empty (a replica past the input's partitions)
        self._eof: set[tuple[str, int]] = set()
        #: The batches produced whose offsets are not committed yet, oldest first.
        self._inflight = Ledger()
        self.health: HealthServer | None = None
        #: With a lean input (``full_topic``): accepted alerts forward their originals (originals.py).
        self.originals = Originals.for_settings(settings, self.heartbeat)
        #: Totals of this process: consumed, accepted (acknowledged), rejected, capped, limited, errors, dead_letters.
        self.totals: dict[str, int] = dict.fromkeys(
            ("consumed", "accepted", "rejected", "capped", "limited", "errors", "dead_letters"), 0
        )
        base = [(H_FILTER, name.encode()), (H_SHA, source_sha256.encode())]
        self.sink = Sink(
            self.producer, settings, list(base), self.metrics, self.totals, self.heartbeat, self._stop.is_set
        )
        self.offsets = Offsets(self.consumer, self.producer, cap, self._assigned, self.limits)
        self.offsets.positions = self.positions = settings.positions(self.consumer, self.status)

    # --- public ------------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Ask the loop to stop after the current message, commit what it processed, and return
        (safe from a signal handler)."""
        self._stop.set()

    def ready(self) -> bool:
        """True once the consumer has joined its group: partitions assigned, or none for a standby
        replica (more replicas than input partitions), which takes over on a rebalance."""
        return self._joined or bool(self._assigned)

    def run(self) -> int:
        """Run until :meth:`stop`, SIGTERM/SIGINT, a fatal client error or idleness.

        Returns:
            0 on a clean stop.

        Raises:
            StartupError: the metrics port is in use.
            BrokersUnreachable: no broker answered within ``topic_wait_s``.
            TopicsMissing: a topic does not exist after ``topic_wait_s``.
            SchemaSourceError: the schema source stayed unusable through every retry; nothing past
                the failing message was dead-lettered or committed.
            DeliveryFailed: a record was not acknowledged (nothing of the batch was committed).
            FilterLoadError, FilterProcessError: a new filter process could not start.
            KafkaException: a fatal client error, or a transaction failed (it was aborted).
        """
        s = self.settings
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        try:
            if s.metrics_port is not None:
                self.health = serve_health(s.metrics_port, self.metrics, self.heartbeat.alive, self.ready, self.status)
            wait_for_topics(self.consumer, s, self._stop, self.heartbeat)
            if s.exactly_once:
                self.producer.init_transactions(60)
            self.consumer.subscribe(
                [s.input_topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke
            )
            self._loop()
        finally:
            self._shutdown()
        return 0

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Rebalance callback: partitions assigned; start positions and replays, then the cap's counts (metadata)."""
        self._settle_pending()
        self.positions.on_assign(partitions)
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self._joined = True
        self.offsets.on_assign(partitions)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Rebalance callback: partitions revoked or lost (the pending batch is settled first)."""
        self._settle_pending()
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
            self._eof.discard((tp.topic, tp.partition))
        self.positions.on_revoke(partitions)
        log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def process_batch(self, batch: list[Any]) -> None:
        """Filter, cap, produce and commit ``batch`` (messages of the consumer). While the schema
        source is unusable, retry from the failing message with back-off (1, 2, 4... s).

        Raises:
            SchemaSourceError: after ``schema_retries`` failed retries.
            DeliveryFailed, KafkaException: as :meth:`run`.
        """
        self._settle_pending()
        self._retry(batch, *self._process_part(batch))

    def _retry(self, part: list[Any], n: int, error: SchemaSourceError | None) -> None:
        """``part``'s first ``n`` messages are processed and settled, and ``error`` stopped it: retry
        from the failing message with back-off while the schema source is unusable."""
        failures = 0
        while error is not None:
            part = part[n:]
            failures = 1 if n else failures + 1
            where, retries = _where(part[0]), self.settings.schema_retries
            if failures > retries:
                raise SchemaSourceError(
                    f"{error} (gave up on {where} after {failures} attempts; nothing past it was dead-lettered or committed)"
                )
            delay = min(2.0 ** (failures - 1), SCHEMA_BACKOFF_MAX_S)
            log.error(
                "cannot decode %s: %s; retrying in %.0f s (attempt %d of %d); nothing past it is dead-lettered or "
                "committed meanwhile",
                *(where, error, delay, failures, retries),
            )
            end = time.monotonic() + delay
            while not self._stop.is_set() and time.monotonic() < end:
                self.heartbeat.beat()
                self._stop.wait(min(1.0, max(end - time.monotonic(), 0.0)))
            if self._stop.is_set():
                return
            n, error = self._process_part(part)

    # --- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        s = self.settings
        last_data = time.monotonic()
        while not self._stop.is_set():
            self.heartbeat.beat()
            self.offsets.rewound.clear()
            msgs = self.consumer.consume(s.batch_size, s.poll_timeout_s)  # may settle the pending batch
            self.producer.poll(0)
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
            verdicts = self.filters.verdicts([m.value() for m in batch], self._stop) if batch else None
            self._commit_acknowledged()  # earlier batches, while the filter process works on this one
            if verdicts is not None and self.offsets.rewound:  # earlier batches are read again: so is this one
                verdicts.close()
                self.offsets.rewind([m for m in batch if (m.topic(), m.partition()) not in self.offsets.rewound])
            elif verdicts is not None:
                n, error = self._produce(batch, verdicts)
                if error is not None:
                    self._settle_pending()
                    self._retry(batch, n, error)
                last_data = time.monotonic()
            else:  # nothing new: wait for every acknowledgement and commit, so the group sees it all
                self._settle_pending()
                quiet = s.exit_when_idle_s is not None and time.monotonic() - last_data >= s.exit_when_idle_s
                if quiet and self._assigned and self._assigned <= self._eof:
                    if group_done(self.consumer, s.input_topic):
                        log.info(
                            "the group has processed all of %s and this runner idled %.0f s; exiting",
                            *(s.input_topic, s.exit_when_idle_s),
                        )
                        break
                    last_data = time.monotonic()
        self._settle_pending()  # stopped: commit what was processed

    def _process_part(self, part: list[Any]) -> tuple[int, SchemaSourceError | None]:
        """Filter, act on and settle ``part`` (see :meth:`_produce`, :meth:`_settle_pending`)."""
        n, error = self._produce(part, self.filters.verdicts([m.value() for m in part], self._stop))
        self._settle_pending()
        return n, error

    def _produce(
        self, part: list[Any], verdicts: Generator[Outcome, None, None]
    ) -> tuple[int, SchemaSourceError | None]:
        """Act on the verdicts of ``part``'s messages in order until the end, a stop request or a
        message whose schema cannot be had (opens the batch's transaction with exactly-once); the
        batch joins the ones in flight, its records counted until acknowledged.

        Returns:
            ``(messages processed, the SchemaSourceError that stopped it or None)``.
        """
        while len(self._inflight) >= MAX_BATCHES_IN_FLIGHT and not self._stop.is_set():
            self.sink.wait(0.1)  # the broker is behind: let it catch up before sending more
            self._commit_acknowledged()
        n, error = 0, None
        batch = InFlight(part)
        self._inflight.add(batch)
        self.sink.batch = batch
        if self.settings.exactly_once:
            self.producer.begin_transaction()
        with self.offsets.aborting(self.settings.exactly_once):
            try:
                for m, oc in zip(part, verdicts, strict=False):  # fewer verdicts: stopped early
                    self._handle(m, oc)
                    n += 1
                    if self._stop.is_set():
                        break
            except SchemaSourceError as exc:
                error = exc
            finally:
                verdicts.close()
                if self.originals is not None:  # the accepted lean alerts' originals, in this batch
                    self.originals.finish(self.limits.gate(self.sink), failed=sys.exc_info()[0] is not None)
                self.sink.batch = None
                batch.close(n, self.offsets.offsets(part[:n]) if n else [], self.cap.checkpoint())
        if n < len(part) and error is None:
            log.info("stopping: %d message(s) of the batch processed, %d left for the next run", n, len(part) - n)
        return n, error

    def _commit_acknowledged(self) -> None:
        """Commit, asynchronously, the offsets of the oldest batches whose records are all
        acknowledged (exactly-once: settle the open transaction). A commit refused at once rewinds
        every batch in flight."""
        if self.settings.exactly_once:
            self._settle_pending()
            return
        with self.offsets.aborting(self.settings.exactly_once):
            self.sink.serve()
        done = self._inflight.acknowledged()
        offsets = merged_offsets(done)
        if offsets and not self.offsets.commit(
            [m for b in done for m in b.part], offsets, done[-1].checkpoint, asynchronous=True
        ):
            self.offsets.rewind([m for b in self._inflight.drain() for m in b.part])

    def _settle_pending(self) -> None:
        """Wait for every record in flight to be acknowledged, then commit their offsets
        synchronously (or the batch's transaction)."""
        if not len(self._inflight):
            return
        with self.offsets.aborting(self.settings.exactly_once):
            self.sink.settle()
            batches = self._inflight.drain()
            if self.settings.exactly_once:
                for b in batches:  # one: a transaction is committed before the next batch is produced
                    self.offsets.commit_transaction(b.part, b.part[: b.done])
                return
            offsets = merged_offsets(batches)
            if offsets:
                self.offsets.commit([m for b in batches for m in b.part], offsets, batches[-1].checkpoint)

    def _handle(self, m: Any, oc: Outcome) -> None:
        """Act on the filter's verdict ``oc`` on message ``m``: cap and limits, then forward or dead-letter."""
        mt, totals = self.metrics, self.totals
        self.heartbeat.last = time.monotonic()
        mt.consumed.inc()
        totals["consumed"] += 1
        self.limits.count(oc.kind == Kind.ACCEPTED)  # the match-rate window counts every alert
        if oc.filter_seconds:
            mt.filter_seconds.observe(oc.filter_seconds)
        if oc.kind == Kind.ACCEPTED:
            if self.visit_of is not None:  # never the filter process's word alone (the cap, the visit header)
                oc.visit = checked_visit(self.visit_of(m.value()), oc.visit, _where(m))
            if not self.cap.admit(oc.visit):
                mt.capped.inc()
                totals["capped"] += 1
            elif self.limits.admit(None if self.originals else len(m.value() or b"")):  # lean: bytes at finish
                (self.originals.defer if self.originals else self.sink.forward)(m, oc)
            else:  # a limit was passed: counted, committed, never forwarded (alertfilter.limits)
                totals["limited"] += 1
        elif oc.kind == Kind.REJECTED:
            mt.rejected.inc()
            totals["rejected"] += 1
        else:
            mt.errors.labels(str(oc.reason)).inc()
            totals["errors"] += 1
            dl = self.originals.view(m) if self.originals else m  # at the original's place
            self.sink.dead_letter(dl, str(oc.reason), oc.message, oc.alert_id)

    # --- start and end -----------------------------------------------------------------------
    def _shutdown(self) -> None:
        try:
            self.producer.flush(30)
        finally:
            try:
                self.consumer.close()
            finally:
                self.filters.close()
                if self.originals is not None:
                    self.originals.close()
                if self.health is not None:
                    self.health.stop()
        log.info("stopped; totals %s", json.dumps(self.totals))


def _where(m: Any) -> str:
    """``topic[partition]@offset`` of message ``m``."""
    return f"{m.topic()}[{m.partition()}]@{m.offset()}"
