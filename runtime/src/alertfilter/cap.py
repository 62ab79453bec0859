"""The per-visit cap: at most N accepted alerts per visit.

The original mini-broker (DMTN-028) capped each filter at N = 20 alerts per visit but reset its
counter whenever the visit id changed, so alerts of interleaved visits broke the cap. Here each
visit id has its own counter; only the ``max_visits`` most recently seen visits are remembered,
so memory stays bounded (one visit every ~39 s gives ~1,000 visits a night).

The cap is per :class:`VisitCap`, i.e. per runner process. With several replicas of a filter the
replicas send their accepted alerts to a cap stage instead (``--cap-stage``, :mod:`alertfilter.capstage`),
which keeps the cap exact; each runner then holds a :class:`StagedCap`.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

log = logging.getLogger("alertfilter.runner")

#: The original design's cap (DMTN-028): 20 alerts per visit per filter.
DEFAULT_MAX_ALERTS_PER_VISIT = 20
#: Visits remembered; a visit older than this many distinct visits starts a fresh count.
DEFAULT_MAX_VISITS = 4096


class VisitCap:
    """Counts accepted alerts per visit id.

    Args:
        max_per_visit: the cap N; ``None`` for no cap.
        max_visits: how many distinct recent visits to remember (least recently seen are dropped).
    """

    def __init__(
        self, max_per_visit: int | None = DEFAULT_MAX_ALERTS_PER_VISIT, max_visits: int = DEFAULT_MAX_VISITS
    ) -> None:
        if max_per_visit is not None and max_per_visit < 0:
            raise ValueError(f"max_per_visit must be >= 0 or None, got {max_per_visit}")
        if max_visits < 1:
            raise ValueError(f"max_visits must be >= 1, got {max_visits}")
        self.max_per_visit = max_per_visit
        self.max_visits = max_visits
        self._counts: OrderedDict[Hashable, int] = OrderedDict()

    def admit(self, visit: Hashable) -> bool:
        """Count one accepted alert of ``visit``; False when the visit already has N (capped)."""
        if self.max_per_visit is None:
            return True
        counts = self._counts
        n = counts.get(visit, 0)
        if n >= self.max_per_visit:
            if n:
                counts.move_to_end(visit)
            return False
        counts[visit] = n + 1
        counts.move_to_end(visit)
        if len(counts) > self.max_visits:
            counts.popitem(last=False)
        return True

    def count(self, visit: Hashable) -> int:
        """Accepted alerts counted so far for ``visit``."""
        return self._counts.get(visit, 0)

    def __len__(self) -> int:
        return len(self._counts)

    def checkpoint(self) -> OrderedDict[Hashable, int]:
        """A copy of the counts, for :meth:`rollback` (when processed alerts will be processed again)."""
        return OrderedDict(self._counts) if self.max_per_visit is not None else OrderedDict()

    def rollback(self, checkpoint: OrderedDict[Hashable, int]) -> None:
        """Return to the counts of ``checkpoint`` (from :meth:`checkpoint`)."""
        if self.max_per_visit is not None:
            self._counts = OrderedDict(checkpoint)

    def snapshot(self, max_bytes: int = 3000) -> str:
        """The most recent visits' counts as compact JSON ``[[visit, count], ...]``, most recent
        last, at most ``max_bytes`` long (older visits are left out to fit).

        Stored with committed offsets (Kafka offset metadata, 4096 bytes by default on the broker:
        ``offset.metadata.max.bytes``) so that a restarted runner keeps the cap exact. Visits keep
        their type: ``12`` and ``"12"`` are different visits.
        """
        items: list[str] = []
        size = 2
        for visit, n in reversed(self._counts.items()):
            item = json.dumps([visit, n], separators=(",", ":"), ensure_ascii=False)
            if size + len(item.encode()) + 1 > max_bytes:
                break
            items.append(item)
            size += len(item.encode()) + 1
        return "[" + ",".join(reversed(items)) + "]"

    def restore(self, snapshots: Iterable[str | list[Any]]) -> None:
        """Merge snapshots taken by :meth:`snapshot` (JSON text, or the list it holds); the largest
        count of each visit wins, and the visits keep the snapshot's order (most recent last).

        Only ``[visit, count]`` pairs with an int or string visit and a non-negative int count are
        used; anything else (malformed text, another format) is ignored.
        """
        for snap in snapshots:
            if isinstance(snap, str):
                try:
                    snap = json.loads(snap)
                except ValueError:
                    continue
            if not isinstance(snap, list):
                continue
            for item in snap:
                if not (isinstance(item, list) and len(item) == 2):
                    continue
                visit, n = item
                if isinstance(visit, bool) or not isinstance(visit, (int, str)):
                    continue
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    continue
                self._counts[visit] = max(self._counts.get(visit, 0), n)
                self._counts.move_to_end(visit)
        while len(self._counts) > self.max_visits:
            self._counts.popitem(last=False)


class StagedCap(VisitCap):
    """The runner's cap when a cap stage counts (``--cap-stage``): it admits every accepted alert
    (the stage caps them) and keeps, unchanged, the counts restored from the committed offsets, which
    go on travelling with them: the counts of an earlier in-process cap, which the stage starts from
    (:func:`alertfilter.caphandover.input_counts`), so a filter going from one replica to several keeps
    its cap for the visits in flight."""

    def admit(self, visit: Hashable) -> bool:
        """Always True: the cap stage decides."""
        return True


def checked_visit(read: Any, said: Any, where: str) -> Any:
    """The visit the cap counts for an accepted alert: ``read``, the runner's own reading of the
    message, unless it could not read one the cap can count (None, not an int or str), then
    ``said``, the filter process's; so a filter process that misreports visits cannot lift the cap.
    A disagreement is logged, naming the message at ``where``."""
    if read is None or isinstance(read, bool) or not isinstance(read, (int, str)):
        return said
    if read != said:
        log.warning(
            "the filter process gave visit %r for %s, whose visit is %r; the cap counts that", said, where, read
        )
    return read
