"""Where the runner starts reading a partition: the group's first run (``--start-from``) and replays
(``--replay-from``, ``--replay-id``).

When a partition is assigned, :meth:`Positions.on_assign` reads the group's committed offset of it:

- no committed offset (the group's first run on it): the start position, ``latest`` (the end: the
  filter sees alerts from now on), ``earliest`` (the oldest the topic holds) or a time (the first
  alert at or after it, by ``offsets_for_times``; a time past the end gives the end);
- a replay request the committed offset's metadata does not carry yet (no mark, or the mark of an
  earlier, smaller request id): the first offset at or after the replay time. The partition's cap
  counts are not carried over (the new position is committed without them), so the replayed alerts
  are capped afresh;
- otherwise the committed offset, as always.

Either new position is committed at once, synchronously, before the consumer fetches anything (the
client then reads it back as the committed offset): the first run's start is fixed even if the
runner dies before its first batch, and a replay is done exactly once per partition and request.
Its mark, ``"replay": [request id, offset]`` in the offset metadata, travels with every later
commit of the partition (:func:`stamp`, :class:`alertfilter.offsets.Offsets`), so a restarted
runner, or one that gets the partition in a rebalance, never rewinds it again; a runner of an
earlier request keeps a later request's mark as it finds it. Each assigned partition's mark is in
the status document (``replay``, ``replayOffset``), where the operator learns a replay is done.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from .convert import SettingError, int_in
from .runstatus import RunnerStatus

log = logging.getLogger("alertfilter.runner")

LATEST, EARLIEST = "latest", "earliest"
#: An RFC 3339 date-time with a UTC offset (``2026-01-02T03:04:05Z``, ``...05.5+01:00``).
RFC3339 = re.compile(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
#: Attempts at reading the committed offsets, and at committing new positions, before the assignment
#: fails (the runner then exits, and restarts).
COMMIT_ATTEMPTS = 3


def parse_time(text: str) -> dt.datetime:
    """The instant an RFC 3339 time names (timezone-aware).

    Raises:
        SettingError: ``text`` is not an RFC 3339 date-time with an offset.
    """
    t = str(text).strip()
    if not RFC3339.match(t):
        raise SettingError(f"expected an RFC 3339 time such as 2026-01-02T03:04:05Z, got {text!r}")
    try:
        parsed = dt.datetime.fromisoformat(t.upper())
        utc = parsed.astimezone(dt.UTC)  # OverflowError at the calendar's edges (9999-12-31T23:59:59-01:00)
    except (ValueError, OverflowError) as exc:
        raise SettingError(f"not a valid time: {text!r} ({exc})") from None
    # Kafka's negative timestamps are special (-1 latest, -2 earliest): a time before the epoch is none
    if utc < dt.datetime(1970, 1, 1, tzinfo=dt.UTC):
        raise SettingError(f"expected a time from 1970-01-01T00:00:00Z on (Kafka's timestamps), got {text!r}")
    return parsed


def rfc3339_time(text: str) -> str:
    """A converter: an RFC 3339 time, as given (stripped)."""
    parse_time(text)
    return str(text).strip()


def start_position(text: str) -> str:
    """A converter: ``latest``, ``earliest`` (any case) or an RFC 3339 time."""
    t = str(text).strip()
    if t.lower() in (LATEST, EARLIEST):
        return t.lower()
    try:
        return rfc3339_time(t)
    except SettingError:
        raise SettingError(
            f"expected latest, earliest or an RFC 3339 time such as 2026-01-02T03:04:05Z, got {text!r}"
        ) from None


def time_ms(text: str) -> int:
    """An RFC 3339 time as Kafka timestamps count: ms since the Unix epoch."""
    return int(parse_time(text).timestamp() * 1000)


#: The options of ``alertfilter run`` this module reads: ``(name, help, default, converter)``.
POSITION_OPTIONS: tuple[tuple[str, str, Any, Any], ...] = (
    (
        "start-from",
        (
            "where the consumer group starts on a partition it has no committed offset for (its first run): latest "
            "(alerts from now on), earliest (everything the input holds) or an RFC 3339 time (the first alert at "
            "or after it; past the end: the end); later runs resume from the committed offsets"
        ),
        EARLIEST,
        start_position,
    ),
    (
        "replay-from",
        (
            "rewind each partition to the first alert at or after this RFC 3339 time, once per --replay-id: a "
            "partition whose committed offset already carries this request (or a later one) is not rewound again"
        ),
        None,
        rfc3339_time,
    ),
    (
        "replay-id",
        "the replay request's number (>= 1; a later request has a larger one); needed with --replay-from",
        None,
        int_in(1),
    ),
)


@dataclass(frozen=True)
class Mark:
    """A replay carried by a partition's committed offset: the request's id and where it rewound to."""

    request: int
    offset: int


def read_mark(metadata: str | None) -> Mark | None:
    """The replay mark of committed offset metadata (``{"replay": [id, offset], ...}``), or None."""
    if not metadata or not metadata.startswith("{"):
        return None
    try:
        data = json.loads(metadata)
    except ValueError:
        return None
    mark = data.get("replay") if isinstance(data, dict) else None
    if isinstance(mark, list) and len(mark) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in mark):
        return Mark(mark[0], mark[1])
    return None


def stamp(metadata: str | None, mark: Mark | None) -> str | None:
    """``metadata`` with ``mark`` in it: a bare cap snapshot (``[[visit, n], ...]``) becomes
    ``{"cap": [...], "replay": [id, offset]}``; an object gets (or replaces) its ``replay``."""
    if mark is None:
        return metadata
    replay = [mark.request, mark.offset]
    if not metadata:
        return json.dumps({"replay": replay}, separators=(",", ":"))
    try:
        data = json.loads(metadata)
    except ValueError:
        data = None
    out: dict[str, Any] = data if isinstance(data, dict) else ({"cap": data} if isinstance(data, list) else {})
    out["replay"] = replay
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def limits_only(metadata: str | None) -> str | None:
    """The limits' state alone of committed ``metadata`` (``{"limits": {...}}``), or None: a replay
    clears the cap's counts (its visits are forwarded again, capped afresh) but never the day's or
    the window's limits, or a replay would be a way around them."""
    try:
        data = json.loads(metadata) if metadata else None
    except ValueError:
        return None
    limits = data.get("limits") if isinstance(data, dict) else None
    return json.dumps({"limits": limits}, separators=(",", ":")) if isinstance(limits, dict) else None


class Positions:
    """Start positions and replays of the partitions assigned to one runner.

    Args:
        consumer: the runner's consumer (``committed``, ``commit``, ``get_watermark_offsets``,
            ``offsets_for_times``, ``list_topics``).
        start_from: ``latest``, ``earliest`` or an RFC 3339 time (:func:`start_position`).
        replay_from, replay_id: a replay request, or None for none.
        status: where each assigned partition's mark is published.
    """

    def __init__(
        self,
        consumer: Any,
        start_from: str = EARLIEST,
        replay_from: str | None = None,
        replay_id: int | None = None,
        status: RunnerStatus | None = None,
    ) -> None:
        self.consumer = consumer
        self.start_from = start_from
        self.replay = (replay_id, time_ms(replay_from)) if replay_from and replay_id else None
        self.replay_from = replay_from
        self.status = status or RunnerStatus()
        #: The replay mark each assigned partition's commits carry (None: none).
        self.marks: dict[tuple[str, int], Mark | None] = {}
        if self.replay is not None:
            self.status.set("replayRequest", replay_id)
            self.status.set("replayFrom", replay_from)

    def on_assign(self, partitions: list[TopicPartition]) -> None:
        """Decide, and commit, the position of each newly assigned partition (see the module).

        Raises:
            KafkaException: the committed offsets, the offsets for a time or the commit of the new
                positions could not be had (the runner stops; its next run decides again).
        """
        if not partitions:
            return
        committed = self._committed(partitions)
        moves: list[TopicPartition] = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            mark = read_mark(tp.metadata)
            if self.replay is not None and (mark is None or mark.request < self.replay[0]):
                mark = Mark(self.replay[0], self._offset_at(tp.topic, tp.partition, self.replay[1]))
                moves.append(TopicPartition(tp.topic, tp.partition, mark.offset, stamp(limits_only(tp.metadata), mark)))
                log.info(
                    "replay %d: %s[%d] rewound to offset %d (the first alert at or after %s; it was at %s)",
                    *(mark.request, tp.topic, tp.partition, mark.offset, self.replay_from, _offset_text(tp.offset)),
                )
            elif tp.offset < 0:
                offset = self._start(tp.topic, tp.partition)
                moves.append(TopicPartition(tp.topic, tp.partition, offset))
                log.info(
                    "%s[%d]: the group's first run starts at offset %d (%s)",
                    tp.topic,
                    tp.partition,
                    offset,
                    self.start_from,
                )
            self.marks[key] = mark
            self.status.assign(tp.topic, tp.partition, **_mark_fields(mark))
        if self.replay is not None:
            self._publish_partitions(partitions[0].topic)
        if moves:
            self._commit(moves)

    def on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Forget the marks of partitions revoked or lost."""
        for tp in partitions:
            self.marks.pop((tp.topic, tp.partition), None)
            self.status.revoke(tp.topic, tp.partition)

    def stamped(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        """``offsets`` to commit, each with its partition's replay mark in its metadata."""
        if not any(self.marks.values()):
            return offsets
        out = []
        for tp in offsets:
            mark = self.marks.get((tp.topic, tp.partition))
            out.append(TopicPartition(tp.topic, tp.partition, tp.offset, stamp(tp.metadata, mark)) if mark else tp)
        return out

    def _committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``, retrying a failure that is not fatal (the
        coordinator moving): a position decided without them could replay or skip a partition.

        Raises:
            KafkaException: still failing after :data:`COMMIT_ATTEMPTS` attempts, or fatal.
        """
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return list(self.consumer.committed(partitions, timeout=10))
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if attempt == COMMIT_ATTEMPTS or (err is not None and err.fatal()):
                    raise
                log.warning("could not read the committed offsets (%s); retrying", exc)
                time.sleep(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self, topic: str, partition: int) -> int:
        """The first run's offset of a partition by ``start_from``."""
        if self.start_from == EARLIEST:
            return int(self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[0])
        if self.start_from == LATEST:
            return int(self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        return self._offset_at(topic, partition, time_ms(self.start_from))

    def _offset_at(self, topic: str, partition: int, ms: int) -> int:
        """The offset of the first message at or after ``ms`` (Kafka timestamp); the end when there is none."""
        found = self.consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=10)[0]
        if found.error is not None:
            raise KafkaException(found.error)
        if found.offset >= 0:
            return int(found.offset)
        return int(self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])

    def _publish_partitions(self, topic: str) -> None:
        """Publish how many partitions the input has (the operator counts the replayed ones against it)."""
        try:
            md = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            log.warning("cannot read the partitions of %s: %s", topic, exc)
            return
        if md is not None and md.error is None:
            self.status.set("inputPartitions", len(md.partitions))

    def _commit(self, moves: list[TopicPartition]) -> None:
        """Commit the new positions synchronously, retrying a failure that is not fatal.

        Raises:
            KafkaException: still failing after :data:`COMMIT_ATTEMPTS` attempts, or fatal.
        """
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                result = self.consumer.commit(offsets=moves, asynchronous=False)
                bad = [tp.error for tp in result or [] if tp.error is not None]
                if not bad:
                    return
                raise KafkaException(bad[0])
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if attempt == COMMIT_ATTEMPTS or (err is not None and err.fatal()):
                    raise
                log.warning("could not commit the start or replay positions (%s); retrying", exc)
                time.sleep(attempt)


def _mark_fields(mark: Mark | None) -> dict[str, Any]:
    return {"replay": mark.request, "replayOffset": mark.offset} if mark else {}


def _offset_text(offset: int) -> str:
    return str(offset) if offset >= 0 else "no committed offset"
