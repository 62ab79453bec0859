"""The originals of accepted lean alerts: a runner reading a pool's lean topic forwards, for each
alert its filter accepts (and the per-visit cap admits), the original full message, byte for byte
with its key and headers, fetched from the full stream at the partition and offset the lean
message's headers name (:mod:`alertfilter.leanstream`).

Only accepted alerts are fetched, at most N per visit: :meth:`Originals.defer` keeps them while a
batch is produced, and :meth:`Originals.flush` fetches them all at once at the batch's end (one
consumer of its own, ``assign`` and ``seek``: no consumer group, nothing committed) and hands them
to the sink, for the same batch, before its offsets can be committed; so at-least-once,
exactly-once (the fetch is read-only, the forwards are in the batch's transaction), the cap and
recovery after SIGKILL hold as on the full stream. An original that is gone (the full stream's
retention passed it, or the lean message names none) becomes a dead letter with the reason
``original-missing``. An alert that could not be filtered is dead-lettered as it was read (its
cutouts null), under the full stream's topic, partition and offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from .lean import H_LEAN_OFFSET, H_LEAN_PARTITION, H_LEAN_TOPIC
from .metrics import Heartbeat
from .outcome import Outcome, Reason
from .settings import RunnerSettings

log = logging.getLogger("alertfilter.runner")

#: The longest one batch's fetch may take, s; past it the runner stops (nothing of the batch is
#: committed: the next start reads it again).
FETCH_TIMEOUT_S = 60.0
#: A wanted offset this close ahead of the fetch position is read up to rather than sought.
SEEK_GAP = 8
#: The fetch consumer's settings: small fetches, as the wanted alerts are few and far apart.
FETCH_TUNING: dict[str, Any] = {
    "max.partition.fetch.bytes": 1024 * 1024,
    "fetch.max.bytes": 16 * 1024 * 1024,
    "queued.max.messages.kbytes": 32 * 1024,
    "fetch.wait.max.ms": 50,
    "fetch.queue.backoff.ms": 10,
}
_OUT_OF_RANGE = (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)


class FetchFailed(RuntimeError):
    """The originals of a batch could not be read in time; nothing of the batch was committed."""


def lean_source(m: Any) -> tuple[str, int, int] | None:
    """The (topic, partition, offset) of the original that lean message ``m`` names, or None."""
    found: dict[str, bytes] = {}
    for key, value in m.headers() or []:
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if name in (H_LEAN_TOPIC, H_LEAN_PARTITION, H_LEAN_OFFSET) and value is not None:
            found[name] = value  # the last one: the lean producer drops any upstream copy
    try:
        return found[H_LEAN_TOPIC].decode(), int(found[H_LEAN_PARTITION]), int(found[H_LEAN_OFFSET])
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def same_alert(lean: Any, original: Any) -> bool:
    """Whether ``original`` can be the full message of the lean message ``lean``: the same key,
    the same framing and schema id (the first 5 bytes), and no smaller (the lean copy has only
    nulled cutouts). A defence in depth against a lean message whose headers name another alert."""
    lv, ov = lean.value() or b"", original.value() or b""
    return bool(lean.key() == original.key() and lv[:5] == ov[:5] and len(ov) >= len(lv))


class LeanView:
    """A lean message seen at its original's place (topic, partition, offset), for dead letters;
    its value, key and headers are the lean message's."""

    def __init__(self, m: Any, source: tuple[str, int, int]) -> None:
        self._m, self._source = m, source

    def topic(self) -> str:
        return self._source[0]

    def partition(self) -> int:
        return self._source[1]

    def offset(self) -> int:
        return self._source[2]

    def value(self) -> Any:
        return self._m.value()

    def key(self) -> Any:
        return self._m.key()

    def headers(self) -> Any:
        return self._m.headers()


def fetch_consumer_config(s: RunnerSettings) -> dict[str, Any]:
    """The fetch consumer's librdkafka settings: the runner's brokers and credentials, its group id
    (never joined, nothing committed), no offset reset (a gone original is an error, not a skip)."""
    return {
        "bootstrap.servers": s.bootstrap_servers,
        **FETCH_TUNING,
        **s.kafka_config,
        "group.id": s.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    }


class Originals:
    """The accepted lean alerts of the batch being produced, and the fetch of their originals.

    Args:
        full_topic: the full stream (never the topic a header names: only this one is read).
        make_consumer: builds the fetch consumer, on first use (``Consumer(fetch_consumer_config(s))``).
        heartbeat: beaten while fetching. timeout_s: :data:`FETCH_TIMEOUT_S`.
    """

    def __init__(
        self,
        full_topic: str,
        make_consumer: Callable[[], Any],
        heartbeat: Heartbeat | None = None,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self.full_topic = full_topic
        self._make_consumer = make_consumer
        self.consumer: Any = None
        self.heartbeat = heartbeat
        self.timeout_s = timeout_s
        self.pending: list[tuple[Any, Outcome]] = []
        #: Originals fetched, and wanted but gone, in this process.
        self.fetched = 0
        self.missing = 0

    @classmethod
    def for_settings(cls, s: RunnerSettings, heartbeat: Heartbeat | None = None) -> Originals | None:
        """The originals of a runner whose input is a lean topic (``s.full_topic`` set), else None."""
        if not s.full_topic:
            return None
        return cls(s.full_topic, lambda: Consumer(fetch_consumer_config(s)), heartbeat)

    def view(self, m: Any) -> Any:
        """``m`` at its original's place (for its dead letter), or ``m`` when it names none."""
        src = lean_source(m)
        return LeanView(m, (self.full_topic, src[1], src[2])) if src is not None else m

    def defer(self, m: Any, oc: Outcome) -> None:
        """Keep the accepted, admitted lean message ``m`` until :meth:`flush`."""
        self.pending.append((m, oc))

    def drop(self) -> None:
        """Forget the kept messages (their batch failed: it is read again)."""
        self.pending.clear()

    def finish(self, sink: Any, failed: bool) -> None:
        """At a batch's end: forward the kept messages' originals through ``sink`` (a
        :class:`~alertfilter.sink.Sink`, for the batch still being produced), or forget them when
        the batch ``failed`` (it is read again); a gone original counts as an error.

        Raises:
            FetchFailed, KafkaException: as :meth:`flush`.
        """
        if failed:
            self.drop()
            return

        def dead_letter(m: Any, reason: str, message: str, alert_id: Any) -> None:
            sink.metrics.errors.labels(reason).inc()
            sink.totals["errors"] += 1
            sink.dead_letter(m, reason, message, alert_id)

        self.flush(sink.forward, dead_letter)

    def flush(self, forward: Callable[[Any, Outcome], None], dead_letter: Callable[[Any, str, str, Any], None]) -> None:
        """Fetch the originals of the kept messages and ``forward`` each (in order), or
        ``dead_letter`` it (``original-missing``) when it is gone.

        Raises:
            FetchFailed: the originals could not all be read within ``timeout_s``.
            KafkaException: a fatal client error.
        """
        pending, self.pending = self.pending, []
        if not pending:
            return
        wanted: list[tuple[int, int]] = []
        sources = []
        for m, _ in pending:
            src = lean_source(m)
            sources.append(src)
            if src is not None and src[0] == self.full_topic:
                wanted.append((src[1], src[2]))
        got = self.fetch(wanted) if wanted else {}
        for (m, oc), src in zip(pending, sources, strict=True):
            original = got.get((src[1], src[2])) if src is not None and src[0] == self.full_topic else None
            if original is not None and same_alert(m, original):
                forward(original, oc)
                continue
            self.missing += 1
            if original is not None and src is not None:
                why = (
                    f"the message at {self.full_topic}[{src[1]}]@{src[2]}, which this accepted lean alert names, "
                    "is not its original (another key, schema id or a smaller size): nothing forwarded"
                )
            elif src is None:
                why = "the lean message names no original (no alertfilter.lean.source-* headers)"
            elif src[0] != self.full_topic:
                why = f"the lean message names an original in {src[0]!r}, not in the full stream {self.full_topic!r}"
            else:
                why = (
                    f"the original {self.full_topic}[{src[1]}]@{src[2]} of this accepted lean alert is gone from the "
                    "full stream (its retention passed it): the dead letter holds the lean alert"
                )
            dead_letter(self.view(m), Reason.ORIGINAL_MISSING.value, why, oc.alert_id)

    def fetch(self, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        """The messages of the full stream at each ``(partition, offset)`` that still exists.

        Raises:
            FetchFailed, KafkaException: as :meth:`flush`.
        """
        if self.consumer is None:
            self.consumer = self._make_consumer()
        c, topic = self.consumer, self.full_topic
        todo: dict[int, list[int]] = {}
        for p, o in sorted(set(wanted)):
            todo.setdefault(p, []).append(o)
        nxt = dict.fromkeys(todo, 0)
        got: dict[tuple[int, int], Any] = {}

        def reassign() -> None:
            """Fetch every partition still wanted from its next wanted offset (a partition whose
            fetch stopped on an offset out of range cannot be sought any more)."""
            c.assign([TopicPartition(topic, q, offs[nxt[q]]) for q, offs in todo.items() if nxt[q] < len(offs)])

        def seek(p: int, offset: int) -> None:
            try:
                c.seek(TopicPartition(topic, p, offset))
            except KafkaException:  # not fetching yet, or stopped: assign again
                reassign()

        def settle(p: int, low: int, high: int) -> None:
            """Drop the wanted offsets of ``p`` outside [low, high): gone; fetch from the next one."""
            offs = todo[p]
            keep = [o for o in offs[nxt[p] :] if low <= o < high]
            todo[p], nxt[p] = keep, 0
            reassign()

        c.assign([TopicPartition(topic, p, offs[0]) for p, offs in todo.items()])
        deadline = time.monotonic() + self.timeout_s
        try:
            while any(nxt[p] < len(todo[p]) for p in todo):
                if self.heartbeat is not None:
                    self.heartbeat.beat()
                if time.monotonic() > deadline:
                    left = sum(len(todo[p]) - nxt[p] for p in todo)
                    raise FetchFailed(f"{left} original(s) not read from {topic} within {self.timeout_s:g} s")
                for msg in c.consume(max(1, sum(len(v) for v in todo.values())), 0.5):
                    p, err = msg.partition(), msg.error()
                    if p not in todo or nxt[p] >= len(todo[p]):
                        continue
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF or err.code() in _OUT_OF_RANGE:
                            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                            settle(p, low, high)
                        elif err.fatal():
                            raise KafkaException(err)
                        else:
                            log.warning("fetching originals: %s", err)
                        continue
                    o, offs, i = msg.offset(), todo[p], nxt[p]
                    while i < len(offs) and offs[i] < o:  # passed over: not in the log any more
                        i += 1
                    if i < len(offs) and offs[i] == o:
                        got[(p, o)] = msg
                        i += 1
                    nxt[p] = i
                    if i < len(offs) and offs[i] - o > SEEK_GAP:
                        seek(p, offs[i])
        finally:
            c.unassign()
        self.fetched += len(got)
        return got

    def close(self) -> None:
        """Close the fetch consumer, if one was made."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
