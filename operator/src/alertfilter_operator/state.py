"""The operator's in-process state, held in kopf's ``memo``: the API client, configuration,
per-object locks and the placement book of which filter runs in which pool."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .config import OperatorConfig
from .kube import Kube
from .models import FilterPoolSpec
from .placement import PoolLoad, filter_weight


@dataclass
class State:
    kube: Kube
    config: OperatorConfig
    _locks: dict[tuple[str, str, str], threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)
    placement_lock: threading.Lock = field(default_factory=threading.Lock)
    #: (namespace, name) of a filter → (pool, runner pods it takes)
    placements: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    _placements_loaded: bool = False

    def lock(self, kind: str, namespace: str | None, name: str) -> threading.Lock:
        """A lock serialising reconcile and status refresh of one object."""
        with self._locks_guard:
            return self._locks[(kind, namespace or "", name)]

    def load_placements(self) -> None:
        """Fill the placement book from the filters' status (once; call with ``placement_lock`` held)."""
        if self._placements_loaded:
            return
        for af in self.kube.list("AlertFilter"):
            meta, spec, status = af["metadata"], af.get("spec") or {}, af.get("status") or {}
            pool = status.get("pool")
            if pool and not meta.get("deletionTimestamp"):
                self.placements[(meta["namespace"], meta["name"])] = (pool, filter_weight(int(spec.get("replicas", 1))))
        self._placements_loaded = True

    def pool_loads(self, exclude: tuple[str, str] | None = None) -> list[PoolLoad]:
        """Every FilterPool's capacity and use (call with ``placement_lock`` held)."""
        used: dict[str, int] = defaultdict(int)
        for key, (pool, weight) in self.placements.items():
            if key != exclude:
                used[pool] += weight
        loads = []
        for p in self.kube.list("FilterPool"):
            if p["metadata"].get("deletionTimestamp"):
                continue
            try:
                spec = FilterPoolSpec.model_validate(p.get("spec") or {})
            except ValueError:
                continue
            cap = spec.capacity.nodes * spec.capacity.filtersPerNode
            loads.append(PoolLoad(p["metadata"]["name"], cap, used[p["metadata"]["name"]]))
        return loads

    def pool_usage(self, pool: str) -> int:
        return sum(w for p, w in self.placements.values() if p == pool)

    def filters_in(self, pool: str) -> list[str]:
        return sorted(f"{ns}/{n}" for (ns, n), (p, _) in self.placements.items() if p == pool)


def conditions_equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal ignoring lastTransitionTime."""

    def strip(cs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in cs),
            key=lambda c: str(c.get("type", "")),
        )

    return strip(a) == strip(b)


def status_unchanged(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when writing ``new`` over the status ``old`` would change nothing but transition times."""
    return conditions_equal(old.get("conditions") or [], new.get("conditions") or []) and all(
        old.get(k) == v for k, v in new.items() if k != "conditions"
    )
