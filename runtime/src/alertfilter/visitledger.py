"""The cap stage's per-visit ledger: which alerts of each visit were forwarded, so that the first N
distinct alerts of a visit pass and a copy of one of them never counts twice.

With several replicas of a filter, each replica sends the alerts it accepts to the filter's
candidates topic, keyed by visit (:mod:`alertfilter.candidates`); a cap stage reads each partition
of that topic (:mod:`alertfilter.capstage`) and keeps one :class:`VisitLedger` per partition. A
visit's candidates all land in one partition, so one ledger sees all of them, in the topic's order.

A replica killed before it committed its input sends the candidates of those messages again when
the messages are read again: each candidate names its source message (topic, partition, offset), and
the ledger admits a source once per visit (:attr:`Verdict.DUPLICATE` the next times). The ledger
travels with the stage's committed offsets (:meth:`VisitLedger.snapshot`, Kafka offset metadata), so
a stage that restarts reads the candidates after its committed offset with the ledger as it was there.

A replay (``--replay-id``, :mod:`alertfilter.positions`) reads alerts again to forward them again,
capped afresh: candidates carry the replay request their input was read under (their generation, 0
before any), and the first candidate of a later generation starts the ledger afresh.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from .cap import DEFAULT_MAX_VISITS

#: A candidate's source message: (topic, partition, offset) of the input message it came from.
SourceId = tuple[str, int, int]
#: Room for a ledger's snapshot in a partition's offset metadata (the broker's
#: ``offset.metadata.max.bytes`` is 4096 by default), bytes.
SNAPSHOT_MAX_BYTES = 3000


class Verdict(StrEnum):
    """What the ledger says of one candidate."""

    ADMITTED = "admitted"  # among the first N distinct alerts of its visit: forward it
    DUPLICATE = "duplicate"  # its source was admitted before (a replica sent it again): drop it, count nothing
    CAPPED = "capped"  # its visit already has N: drop it


class VisitLedger:
    """The alerts admitted per visit, at most ``max_per_visit`` each.

    Args:
        max_per_visit: the cap N (>= 0).
        max_visits: how many distinct recent visits to remember (least recently seen are dropped).
        seed: counts another cap kept before this ledger took over (the in-process cap of a filter
            that ran with one replica), ``{visit: count}``: a visit's count is never below its seed
            while the ledger is at ``seed_generation`` (the replay request the seed was counted under).

    A visit's entry is ``[count, {source ids}]``; the count may exceed the ids remembered (a seed,
    or a snapshot cut short to fit), never the reverse. :attr:`generation` is the replay request
    the counts belong to.
    """

    def __init__(
        self,
        max_per_visit: int,
        max_visits: int = DEFAULT_MAX_VISITS,
        seed: Mapping[Hashable, int] | None = None,
        seed_generation: int = 0,
    ) -> None:
        if max_per_visit < 0:
            raise ValueError(f"max_per_visit must be >= 0, got {max_per_visit}")
        if max_visits < 1:
            raise ValueError(f"max_visits must be >= 1, got {max_visits}")
        self.max_per_visit = max_per_visit
        self.max_visits = max_visits
        self.seed: Mapping[Hashable, int] = seed or {}
        self.seed_generation = seed_generation
        self.generation = 0
        self._visits: OrderedDict[Hashable, tuple[int, frozenset[SourceId]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._visits)

    def count(self, visit: Hashable) -> int:
        """Alerts of ``visit`` counted so far (at least its seed)."""
        n = self._visits[visit][0] if visit in self._visits else 0
        return max(n, self.seed.get(visit, 0)) if self.generation == self.seed_generation else n

    def admit(self, visit: Hashable, source: SourceId, generation: int = 0) -> Verdict:
        """Decide the candidate of ``visit`` that came from the input message ``source``, read
        under replay request ``generation`` (a later one than the ledger's starts it afresh; an
        earlier one, a candidate written before the replay, counts with the current ones)."""
        if generation > self.generation:
            self._visits.clear()
            self.generation = generation
        ids = self._visits[visit][1] if visit in self._visits else frozenset()
        n = self.count(visit)
        if source in ids:
            verdict = Verdict.DUPLICATE
        elif n >= self.max_per_visit:
            verdict = Verdict.CAPPED
        else:
            n, ids, verdict = n + 1, ids | {source}, Verdict.ADMITTED
        self._visits[visit] = (n, ids)
        self._visits.move_to_end(visit)
        if len(self._visits) > self.max_visits:
            self._visits.popitem(last=False)
        return verdict

    def checkpoint(self) -> tuple[int, OrderedDict[Hashable, tuple[int, frozenset[SourceId]]]]:
        """The ledger as it is now, for :meth:`rollback` (entries are immutable: a shallow copy)."""
        return self.generation, OrderedDict(self._visits)

    def rollback(self, checkpoint: tuple[int, OrderedDict[Hashable, tuple[int, frozenset[SourceId]]]]) -> None:
        """Return to ``checkpoint`` (from :meth:`checkpoint`)."""
        self.generation, self._visits = checkpoint[0], OrderedDict(checkpoint[1])

    def counts(self) -> list[list[Any]]:
        """``[[visit, count], ...]``, most recent last: the form :meth:`alertfilter.cap.VisitCap.restore` reads."""
        return [[visit, self.count(visit)] for visit in self._visits]

    def snapshot(self, max_bytes: int = SNAPSHOT_MAX_BYTES) -> str:
        """The most recent visits as compact JSON ``[[visit, count, {topic: [[partition, offset], ...]}], ...]``,
        most recent last, at most ``max_bytes`` long (UTF-8); after a replay, ``{"g": generation, "v": [...]}``.

        A visit whose source ids do not fit keeps its count alone (``[visit, count]``: after a
        restart, a copy of one of its alerts would count again); older visits are left out once
        not even that fits. At N = 20 and offsets of 8 digits a visit takes ~300 bytes: the
        snapshot holds the last ~10 visits of a partition.
        """
        head = f'{{"g":{self.generation},"v":' if self.generation else ""
        items: list[str] = []
        size = 2 + len(head) + (1 if head else 0)
        for visit, (n, ids) in reversed(self._visits.items()):
            by_topic: dict[str, list[list[int]]] = {}
            for topic, partition, offset in sorted(ids):
                by_topic.setdefault(topic, []).append([partition, offset])
            for form in ([visit, n, by_topic], [visit, n]):
                item = json.dumps(form, separators=(",", ":"), ensure_ascii=False)
                if size + len(item.encode()) + 1 <= max_bytes:
                    items.append(item)
                    size += len(item.encode()) + 1
                    break
            else:
                break
        return head + "[" + ",".join(reversed(items)) + "]" + ("}" if head else "")

    def restore(self, snapshot: str | None) -> None:
        """Take the visits of a :meth:`snapshot` (JSON text; anything unreadable is ignored, item by
        item): a visit's count is the larger of the two, its source ids the union. A snapshot of a
        later generation replaces the ledger; one of an earlier generation is ignored."""
        try:
            data = json.loads(snapshot) if snapshot else None
        except ValueError:
            return
        generation = data.get("g") if isinstance(data, dict) else 0
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < self.generation:
            return
        if generation > self.generation:
            self._visits.clear()
            self.generation = generation
        data = data.get("v") if isinstance(data, dict) else data
        for item in data if isinstance(data, list) else []:
            parsed = _item(item)
            if parsed is None:
                continue
            visit, n, ids = parsed
            old_n, old_ids = self._visits.get(visit, (0, frozenset()))
            self._visits[visit] = (max(n, old_n), old_ids | ids)
            self._visits.move_to_end(visit)
        while len(self._visits) > self.max_visits:
            self._visits.popitem(last=False)


def _item(item: Any) -> tuple[Hashable, int, frozenset[SourceId]] | None:
    """``(visit, count, source ids)`` of one snapshot item, or None when it is not one."""
    if not isinstance(item, list) or len(item) not in (2, 3):
        return None
    visit, n = item[0], item[1]
    if isinstance(visit, bool) or not isinstance(visit, (int, str)):
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return None
    ids: set[SourceId] = set()
    by_topic = item[2] if len(item) == 3 else {}
    for topic, pairs in by_topic.items() if isinstance(by_topic, dict) else []:
        for pair in pairs if isinstance(pairs, list) else []:
            if isinstance(pair, list) and len(pair) == 2 and all(_is_int(x) for x in pair):
                ids.add((str(topic), pair[0], pair[1]))
    return visit, n, frozenset(ids)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def merged_counts(snapshots: Iterable[list[Any] | None]) -> dict[Hashable, int]:
    """``{visit: count}`` from cap snapshots' items (``[[visit, count], ...]``, as
    :func:`alertfilter.offsets.decode_commit_metadata` gives them): the largest count of each visit."""
    out: dict[Hashable, int] = {}
    for items in snapshots:
        for item in items or []:
            parsed = _item(item) if isinstance(item, list) and len(item) == 2 else None
            if parsed is not None:
                out[parsed[0]] = max(out.get(parsed[0], 0), parsed[1])
    return out
