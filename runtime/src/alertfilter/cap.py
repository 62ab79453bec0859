"""The per-visit cap: at most N accepted alerts per visit.

The original mini-broker (DMTN-028) capped each filter at N = 20 alerts per visit but reset its
counter whenever the visit id changed, so alerts of interleaved visits broke the cap. Here each
visit id has its own counter; only the ``max_visits`` most recently seen visits are remembered,
so memory stays bounded (one visit every ~39 s gives ~1,000 visits a night).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Iterable

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

    def __init__(self, max_per_visit: int | None = DEFAULT_MAX_ALERTS_PER_VISIT,
                 max_visits: int = DEFAULT_MAX_VISITS) -> None:
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

    def snapshot(self, max_bytes: int = 3000) -> str:
        """The most recent visits' counts as ``"visit:count,..."``, at most ``max_bytes`` long.

        Stored with committed offsets (Kafka offset metadata, 4096 bytes by default on the broker:
        ``offset.metadata.max.bytes``) so that a restarted runner keeps the cap exact.
        """
        parts: list[str] = []
        size = 0
        for visit, n in reversed(self._counts.items()):
            item = f"{visit}:{n}"
            if size + len(item) + 1 > max_bytes:
                break
            parts.append(item)
            size += len(item) + 1
        return ",".join(reversed(parts))

    def restore(self, snapshots: Iterable[str]) -> None:
        """Merge snapshots taken by :meth:`snapshot` (the largest count of each visit wins).

        Visit ids that look like integers are restored as ``int``; malformed items are ignored.
        """
        for snap in snapshots:
            for item in (snap or "").split(","):
                visit_s, _, n_s = item.rpartition(":")
                if not visit_s or not n_s.isdigit():
                    continue
                visit: Hashable = int(visit_s) if visit_s.lstrip("-").isdigit() else visit_s
                self._counts[visit] = max(self._counts.get(visit, 0), int(n_s))
                self._counts.move_to_end(visit)
        while len(self._counts) > self.max_visits:
            self._counts.popitem(last=False)
