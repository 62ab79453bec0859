"""Input offsets: what the runner commits, and how.

- At-least-once: :meth:`Offsets.commit` commits once the batches' records are acknowledged:
  asynchronously while the runner runs (a later commit carries a later offset, so one lost to a
  rebalance is made good by the next, or replayed by the partition's next owner), synchronously
  when the runner stops or its partitions go. A failure the client reports at once, not fatal (a
  rebalance, the coordinator moving), rewinds the batches, which are then processed again.
- Exactly-once: :meth:`Offsets.commit_transaction` adds the offsets to the batch's transaction;
  an abortable failure aborts it and rewinds the batch.

The per-visit cap's recent counts, and the state of the limits (:mod:`alertfilter.limits`), travel
with the committed offsets as offset metadata (compact JSON, :func:`encode_commit_metadata`), so a
restarted runner keeps the cap exact for the visits in flight and its limits' day and window;
:meth:`Offsets.on_assign` restores them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from .cap import VisitCap
from .clients import kafka_error
from .limits import LimitGuard
from .positions import Positions

log = logging.getLogger("alertfilter.runner")


def encode_commit_metadata(cap_snapshot: str | None, limits: dict[str, Any] | None = None) -> str | None:
    """The offset metadata committed with a partition's offset: ``cap_snapshot``
    (:meth:`VisitCap.snapshot`, ``[[visit, count], ...]``) as it is, or, with the limits' state
    (:meth:`LimitGuard.snapshot`), ``{"cap": [...], "limits": {...}}``; None when there is neither."""
    if limits is None:
        return cap_snapshot or None
    return '{"cap":' + (cap_snapshot or "[]") + ',"limits":' + json.dumps(limits, separators=(",", ":")) + "}"


def decode_limits_metadata(text: str | None) -> dict[str, Any] | None:
    """The limits' state of committed offset metadata (``{"limits": {...}}``), or None."""
    if not text or not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    limits = data.get("limits") if isinstance(data, dict) else None
    return limits if isinstance(limits, dict) else None


def decode_commit_metadata(text: str | None) -> list[Any] | None:
    """The cap items of committed offset metadata, or None. An earlier runner's
    ``{"cap": [...], "skip": [...]}`` form gives its cap items; anything unreadable gives None."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("cap")
    return data if isinstance(data, list) else None


class Offsets:
    """Commits a batch's input offsets, with the cap's counts, and rewinds a batch that failed.

    Args:
        consumer, producer: the runner's clients (the producer for transactions).
        cap: the per-visit cap (its counts go with the offsets; rolled back on a rewind).
        assigned: the partitions currently assigned, ``{(topic, partition)}`` (shared with the runner).
        limits: the limits (their state goes with the offsets; rolled back on a rewind).
    """

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        cap: VisitCap,
        assigned: set[tuple[str, int]],
        limits: LimitGuard | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.cap = cap
        self.assigned = assigned
        self._checkpoint = cap.checkpoint()
        self.limits = limits or LimitGuard()
        #: The limits' state as last committed (what a rewind returns to).
        self._limits_checkpoint = self.limits.snapshot()
        #: Partitions :meth:`rewind` sent back, ``{(topic, partition)}`` (the runner clears it).
        self.rewound: set[tuple[str, int]] = set()
        #: Adds each partition's replay mark to the offsets committed (:meth:`Positions.stamped`); None: no marks.
        self.positions: Positions | None = None

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Restore the cap's counts from the newly assigned partitions' committed metadata."""
        if not partitions:
            return
        try:
            committed = self.consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            log.warning("could not read the committed offsets' metadata (cap state): %s", exc)
            return
        caps = [items for items in (decode_commit_metadata(tp.metadata) for tp in committed) if items is not None]
        if caps and self.cap.max_per_visit is not None:
            self.cap.restore(caps)
            self._checkpoint = self.cap.checkpoint()
        if self.limits.active:
            self.limits.restore(decode_limits_metadata(tp.metadata) for tp in committed)
            self._limits_checkpoint = self.limits.snapshot()

    @contextlib.contextmanager
    def aborting(self, exactly_once: bool) -> Iterator[None]:
        """With ``exactly_once``, abort the open transaction when the block raises (and re-raise)."""
        try:
            yield
        except Exception:
            if exactly_once:
                log.exception("transaction failed; aborting it (no output of this batch becomes visible)")
                try:
                    self.producer.abort_transaction(30)
                except KafkaException as exc:
                    log.error("abort failed: %s", exc)
            raise

    def offsets(self, done: list[Any]) -> list[TopicPartition]:
        """The offsets to commit after the messages ``done``: one past the last of each partition."""
        last: dict[tuple[str, int], int] = {}
        for m in done:
            k = (m.topic(), m.partition())
            last[k] = max(last.get(k, -1), m.offset())
        cap = self.cap.snapshot() if self.cap.max_per_visit is not None else None
        meta = encode_commit_metadata(cap, self.limits.snapshot())
        return [
            TopicPartition(t, p, o + 1, meta) if meta else TopicPartition(t, p, o + 1) for (t, p), o in last.items()
        ]

    def committed(
        self, checkpoint: OrderedDict[Hashable, int] | None = None, offsets: list[TopicPartition] | None = None
    ) -> None:
        """Bookkeeping after a successful commit: the cap's checkpoint (``checkpoint``, the counts
        after the committed messages; the current counts when None), and the limits' state the
        committed ``offsets`` carry (the current state when they carry none)."""
        self._checkpoint = checkpoint if checkpoint is not None else self.cap.checkpoint()
        if self.limits.active:
            carried = next((decode_limits_metadata(tp.metadata) for tp in offsets or [] if tp.metadata), None)
            self._limits_checkpoint = carried if carried is not None else self.limits.snapshot()

    def rewind(self, part: list[Any]) -> None:
        """After a failed commit or an aborted transaction: process ``part`` again (seek back to its
        first offset on each partition still assigned) and forget its cap counts."""
        self.cap.rollback(self._checkpoint)
        self.limits.rollback(self._limits_checkpoint)
        first: dict[tuple[str, int], int] = {}
        for m in part:
            first.setdefault((m.topic(), m.partition()), m.offset())
        for (t, p), o in first.items():
            if (t, p) not in self.assigned:
                continue
            self.rewound.add((t, p))
            try:
                self.consumer.seek(TopicPartition(t, p, o))
            except KafkaException as exc:  # revoked meanwhile: its new owner starts from the committed offset
                log.debug("cannot seek %s[%d] back to %d: %s", t, p, o, exc)

    def commit(
        self,
        part: list[Any],
        offsets: list[TopicPartition],
        checkpoint: OrderedDict[Hashable, int] | None = None,
        asynchronous: bool = False,
    ) -> bool:
        """Commit ``offsets`` (at-least-once), the cap's counts being ``checkpoint`` after them (the
        current counts when None). A failure that is not fatal is logged and ``part`` is processed
        again; returns False then. ``asynchronous``: queue the commit and return (its outcome goes to
        the consumer's ``on_commit``, :meth:`alertfilter.clients.ClientEvents.on_commit`).

        Raises:
            KafkaException: a fatal error.
        """
        offsets = self.positions.stamped(offsets) if self.positions else offsets
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
                self.committed(checkpoint, offsets)
                return True
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.fatal():
                raise
            if err.code() == KafkaError.OFFSET_METADATA_TOO_LARGE:
                log.warning(
                    "the broker refuses the offset metadata (cap state) as too large "
                    "(offset.metadata.max.bytes); committing without it"
                )
                plain = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in offsets]
                return self.commit(part, plain, checkpoint, asynchronous)
            log.warning(
                "could not commit offsets (%s); the batch's %d messages will be processed again (at-least-once)",
                err,
                len(part),
            )
            self.rewind(part)
            return False
        bad = [tp for tp in result or [] if tp.error is not None]
        if bad:
            if any(tp.error.fatal() for tp in bad):
                raise KafkaException(bad[0].error)
            log.warning(
                "could not commit the offsets of %s (%s); those messages will be processed again",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in bad),
                bad[0].error,
            )
            self.rewind([m for m in part if any(m.partition() == tp.partition and m.topic() == tp.topic for tp in bad)])
            return False
        self.committed(checkpoint, offsets)
        return True

    def commit_transaction(self, part: list[Any], done: list[Any]) -> None:
        """Add ``done``'s offsets to the open transaction and commit it. A retriable failure is retried;
        an abortable one aborts the transaction and processes ``part`` again.

        Raises:
            KafkaException: a fatal error (the producer was fenced...) or retries exhausted.
        """
        offsets = self.offsets(done) if done else []
        offsets = self.positions.stamped(offsets) if self.positions else offsets
        try:
            if offsets:
                self.producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(), 30)
            for attempt in range(3):
                try:
                    self.producer.commit_transaction(60)
                    break
                except KafkaException as exc:
                    err = kafka_error(exc)
                    if err is None or not err.retriable() or attempt == 2:
                        raise
                    log.warning("committing the transaction failed (%s); retrying", err)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and not err.fatal() and err.txn_requires_abort():
                log.warning(
                    "transaction failed (%s); aborting it and processing the batch's %d messages again", err, len(part)
                )
                self.producer.abort_transaction(30)
                self.rewind(part)
                return
            raise
        self.committed(None, offsets)
