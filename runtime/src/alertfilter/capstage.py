"""The cap stage: an exact per-visit cap however many replicas a filter has (``--cap-stage``).

Each replica's runner sends the alerts its filter accepts to the filter's candidates topic, keyed by
visit (:mod:`alertfilter.candidates`), in the batch (and, with exactly-once, the transaction) of
their input. A cap stage runs in every replica, on a thread of its own with its own clients: its
consumer group (``<group>.cap``) shares the candidates topic's partitions among the replicas, and
for each partition it forwards the first N distinct candidates of each visit in the partition's
order to the output topic, as the runner forwards with one replica (original value, key and
headers, plus the provenance headers). "The first N alerts of a visit" is therefore the first N
in the candidates topic's order (the order the replicas' records reached it), counting a source
message once.

- At-least-once: a batch's outputs are acknowledged before its offsets are committed, with each
  partition's :class:`~alertfilter.visitledger.VisitLedger` as offset metadata; a stage that dies
  is replaced by another replica's, which reads on from the committed offset with the ledger as it
  was there, so it makes the same decisions (it may send the batch's outputs again, as the runner
  may). Exactly-once: a batch's outputs, offsets and ledgers are one transaction.
- A replica killed before committing its input sends those candidates again: the ledger admits a
  source message (topic, partition, offset) once per visit.
- Going from one replica (the cap in the runner's process) to several, the stage starts from the
  counts that cap committed with the input offsets; going back, the lone runner first forwards
  what the stages left in the candidates topic (:meth:`CapStage.drain`) and starts its own cap from
  their counts (:mod:`alertfilter.caphandover`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from .candidates import CAP_GROUP_SUFFIX, cap_group, parse_candidate
from .clients import KafkaClients, group_done, kafka_error
from .metrics import Heartbeat, RunnerMetrics
from .outcome import Kind, Outcome
from .settings import RunnerSettings
from .sink import Headers, Sink
from .visitledger import Verdict, VisitLedger

log = logging.getLogger("alertfilter.capstage")

#: The longest one consume call of the stage waits for a batch to fill, s: candidates trickle in (a
#: few per visit and replica), and each waits this long at most before the stage sees it.
STAGE_POLL_S = 0.05


def stage_settings(s: RunnerSettings) -> RunnerSettings:
    """The settings of a runner's cap stage: its group, and its transactional id (the runner's
    with ``.cap``, under the same prefix, so the filter's ACLs cover it)."""
    return dataclasses.replace(
        s, group_id=cap_group(s.group_id), transactional_id=s.transactional() + CAP_GROUP_SUFFIX, cap_stage=False
    )


def committed_offsets(consumer: Any, partitions: list[TopicPartition], attempts: int = 10) -> list[TopicPartition]:
    """``consumer.committed(partitions)``, tried again each second while the group's coordinator
    loads or moves (a new group's first request often meets it).

    Raises:
        KafkaException: another error, or still failing after ``attempts`` tries.
    """
    for attempt in range(attempts):
        try:
            return list(consumer.committed(partitions, timeout=10))
        except KafkaException as exc:
            err = kafka_error(exc)
            waits = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
            if err is None or attempt == attempts - 1 or not (err.retriable() or err.code() in waits):
                raise
            time.sleep(1.0)
    return []


class CapStage:
    """Forwards the first N candidates of each visit of the partitions it is assigned.

    Args:
        settings: the stage's settings (:func:`stage_settings`).
        clients: its consumer and producer (transactional with exactly-once).
        max_per_visit: the cap N.
        base_headers: the provenance headers of every output (filter name, source hash).
        metrics: ``accepted``, ``capped``, ``errors`` and ``dead_letters`` are counted here.
        seed, seed_generation: the counts to start each visit from, and the replay request they
            were counted under (:func:`alertfilter.caphandover.input_counts`).
    """

    def __init__(
        self,
        settings: RunnerSettings,
        clients: KafkaClients,
        max_per_visit: int,
        base_headers: Headers,
        metrics: RunnerMetrics,
        seed: Mapping[Hashable, int] | None = None,
        seed_generation: int = 0,
    ) -> None:
        self.settings = settings
        self.topic = settings.candidates_topic or ""
        self.consumer, self.producer = clients.consumer, clients.producer
        self.max_per_visit = max_per_visit
        self.seed, self.seed_generation = dict(seed or {}), seed_generation
        self.metrics = metrics
        #: Set to stop the loop after its current batch.
        self.halt = threading.Event()
        #: Set (by another thread) to have the loop check, when idle, whether its group is done;
        #: :attr:`finished` is set when it is (the client serializes calls: only the loop's thread uses it).
        self.check_done = threading.Event()
        self.finished = threading.Event()
        self._checked = 0.0
        self.heartbeat = Heartbeat(settings.liveness_window())
        self.totals = dict.fromkeys(("candidates", "accepted", "capped", "duplicates", "errors", "dead_letters"), 0)
        self.sink = Sink(self.producer, settings, base_headers, metrics, self.totals, self.heartbeat, self.halt.is_set)
        #: The ledger of each assigned partition, and its committed offset and end (when at it).
        self.ledgers: dict[int, VisitLedger] = {}
        self._committed: dict[int, int] = {}
        self._eof: dict[int, int] = {}
        self._closing = False

    # --- rebalance ---------------------------------------------------------------------------
    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions assigned: each one's ledger from its committed metadata (none while closing:
        an assignment not yet served comes during ``close()``)."""
        if self._closing:
            return
        committed = committed_offsets(consumer, partitions) if partitions else []
        for tp in committed:
            ledger = self._new_ledger()
            ledger.restore(tp.metadata)
            self.ledgers[tp.partition] = ledger
            self._committed[tp.partition] = tp.offset
        log.info("cap stage assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions revoked or lost (every batch is committed before the next poll: nothing is pending)."""
        for tp in partitions:
            self.ledgers.pop(tp.partition, None)
            self._committed.pop(tp.partition, None)
            self._eof.pop(tp.partition, None)

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Consume, cap, forward and commit until :attr:`halt` is set; the clients are closed at the end.

        Raises:
            KafkaException: a fatal client error, or a transaction that could not be aborted.
            DeliveryFailed: an output was not acknowledged (nothing of its batch was committed).
        """
        try:
            if self.settings.exactly_once:
                self.producer.init_transactions(60)
            self.consumer.subscribe(
                [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke
            )
            while not self.halt.is_set():
                self.poll_once()
        finally:
            self.close()

    def poll_once(self) -> None:
        """One turn: a batch of candidates capped, forwarded and committed; or, idle, the ends of
        the partitions committed (past any transaction marker, so the group's progress shows it)."""
        s = self.settings
        self.heartbeat.beat()
        batch = []
        for m in self.consumer.consume(s.batch_size, min(s.poll_timeout_s, STAGE_POLL_S)):
            err = m.error()
            if err is None:
                batch.append(m)
                self._eof.pop(m.partition(), None)
            elif err.code() == KafkaError._PARTITION_EOF:
                self._eof[m.partition()] = m.offset()
            elif err.fatal():
                raise KafkaException(err)
            else:
                log.warning("cap stage consumer error: %s", err)
        if batch:
            self._process(batch)
            return
        ends = {p: o for p, o in self._eof.items() if p in self.ledgers and o > self._committed.get(p, -1)}
        if ends:
            self._commit(ends)
        elif self.check_done.is_set() and time.monotonic() - self._checked >= 1.0:
            self._checked = time.monotonic()
            if self.done():
                self.finished.set()

    def _process(self, batch: list[Any]) -> None:
        """Cap and forward ``batch``, then commit it; a commit refused reads the batch again."""
        checkpoints = {p: self._ledger(p).checkpoint() for p in {m.partition() for m in batch}}
        if self.settings.exactly_once:
            self.producer.begin_transaction()
        try:
            for m in batch:
                self._handle(m)
            self.sink.settle()
            ends = {m.partition(): m.offset() + 1 for m in batch}
            ok = self._commit(ends, opened=True)
        except Exception:
            if self.settings.exactly_once:
                log.exception("cap stage transaction failed; aborting it")
                with contextlib.suppress(KafkaException):
                    self.producer.abort_transaction(30)
            raise
        if not ok:
            first: dict[int, int] = {}
            for m in batch:
                first.setdefault(m.partition(), m.offset())
            for p, offset in first.items():
                if p in self.ledgers:
                    self.ledgers[p].rollback(checkpoints[p])
                    with contextlib.suppress(KafkaException):
                        self.consumer.seek(TopicPartition(self.topic, p, offset))

    def _ledger(self, partition: int) -> VisitLedger:
        if partition not in self.ledgers:  # a message of a partition whose assignment was not seen
            self.ledgers[partition] = self._new_ledger()
        return self.ledgers[partition]

    def _new_ledger(self) -> VisitLedger:
        return VisitLedger(self.max_per_visit, seed=self.seed, seed_generation=self.seed_generation)

    def _handle(self, m: Any) -> None:
        """Forward, cap or drop (a copy) the candidate ``m``."""
        self.totals["candidates"] += 1
        try:
            c = parse_candidate(m)
        except ValueError as exc:
            log.error("not a candidate, skipped: %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
            return
        verdict = self._ledger(m.partition()).admit(c.visit, c.source, c.generation)
        if verdict == Verdict.ADMITTED:
            self.sink.forward(c.message, Outcome(Kind.ACCEPTED, alert_id=c.alert_id, visit=c.visit))
        elif verdict == Verdict.CAPPED:
            self.metrics.capped.inc()
            self.totals["capped"] += 1
        else:
            self.totals["duplicates"] += 1
            log.debug("candidate of %s[%d]@%d seen before; dropped", *c.source)

    def _commit(self, ends: dict[int, int], opened: bool = False) -> bool:
        """Commit the offsets ``ends`` (``{partition: next offset}``) with each partition's ledger;
        with exactly-once in the open transaction (``opened``) or in one of their own. False when
        the commit was refused without a fatal error (the batch is to be read again).

        Raises:
            KafkaException: a fatal error, or retries exhausted.
        """
        offsets = [TopicPartition(self.topic, p, o, self.ledgers[p].snapshot()) for p, o in ends.items()]
        try:
            if not self.settings.exactly_once:
                result = self.consumer.commit(offsets=offsets, asynchronous=False) or []
                bad = next((tp.error for tp in result if tp.error is not None), None)
                if bad is not None:
                    raise KafkaException(bad)
            else:
                if not opened:
                    self.producer.begin_transaction()
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
                self._commit_transaction()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.fatal():
                raise
            if self.settings.exactly_once:
                if not err.txn_requires_abort():
                    raise
                self.producer.abort_transaction(30)
            log.warning("cap stage could not commit (%s); its batch will be read again", err)
            return False
        self._committed.update(ends)
        return True

    def _commit_transaction(self) -> None:
        for attempt in range(3):
            try:
                self.producer.commit_transaction(60)
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is None or not err.retriable() or attempt == 2:
                    raise
                log.warning("committing the cap stage's transaction failed (%s); retrying", err)

    # --- end ---------------------------------------------------------------------------------
    def done(self) -> bool:
        """True when the stage's group has committed every partition of the candidates topic to its
        end (call it from the loop's thread, or before or after the loop)."""
        return group_done(self.consumer, self.topic)

    def close(self) -> None:
        """Flush the producer and leave the group."""
        self._closing = True
        try:
            self.producer.flush(30)
        finally:
            self.consumer.close()
        log.info("cap stage stopped; totals %s", self.totals)

    def drain(self, timeout_s: float = 600.0) -> tuple[list[list[Any]], int]:
        """Forward what is left in the candidates topic (one replica taking over from several: run
        with no other stage of the filter), then close; returns every visit's count,
        ``[[visit, count], ...]``, for the in-process cap (:meth:`VisitCap.restore`), and the
        replay request they were counted under.

        Raises:
            TimeoutError: the topic was not drained within ``timeout_s``.
            KafkaException, DeliveryFailed: as :meth:`run`.
        """
        try:
            if not self.done():
                self.run_until(self.done, timeout_s)
            parts = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
            committed = committed_offsets(self.consumer, [TopicPartition(self.topic, p) for p in parts])
        finally:
            self.halt.set()
            self.close()
        ledger = VisitLedger(self.max_per_visit)
        for tp in committed:  # each partition's ledger, as committed at its end
            ledger.restore(tp.metadata)
        return ledger.counts(), ledger.generation

    def run_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Turn the loop in this thread until ``done()`` (checked every second or so)."""
        if self.settings.exactly_once:
            self.producer.init_transactions(60)
        self.consumer.subscribe(
            [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke
        )
        deadline, checked = time.monotonic() + timeout_s, 0.0
        while not self.halt.is_set():
            self.poll_once()
            if time.monotonic() - checked >= 1.0:
                if done():
                    return
                checked = time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the candidates topic {self.topic} was not drained in {timeout_s:.0f} s")
