"""Placement of AlertFilters into FilterPools (pure).

A filter without ``spec.pool`` goes to the pool with the most free capacity, ties broken by pool
name, so the choice is deterministic for a given state. A pool never takes more than its capacity
(``nodes x filtersPerNode`` runner pods); when no pool can take a filter it is unschedulable.

Which filter runs where (the *placement book*) comes from the filters' own ``status.pool``, kept
up to date by a kopf index over the watch stream (:func:`placement_of` is the index's body), plus
the decisions this operator made that the stream has not shown yet (:func:`merge_placements`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .models import FilterPoolSpec

#: A filter's identity: (namespace, name).
FilterKey = tuple[str, str]
#: Where a filter runs and what it takes there: (pool name, runner pods).
Placement = tuple[str, int]
#: The kopf index of placements (or any mapping of a key to its values, one value per key).
PlacementIndex = Mapping[FilterKey, Iterable[Placement]]
#: How often a worker thread retries copying the index while the event loop changes it.
SNAPSHOT_ATTEMPTS = 10


@dataclass(frozen=True)
class PoolLoad:
    """A pool's capacity and what is placed in it, in runner pods."""

    name: str
    capacity: int
    used: int
    ready: bool = True

    @property
    def free(self) -> int:
        """Runner pods the pool can still take (never negative)."""
        return max(self.capacity - self.used, 0)


class Unschedulable(Exception):
    """No pool can take the filter; ``str()`` says why."""


def filter_weight(replicas: int) -> int:
    """Capacity a filter takes: its runner pods, at least 1 (a suspended filter keeps its slot)."""
    return max(replicas, 1)


def choose_pool(pools: list[PoolLoad], weight: int, requested: str | None = None) -> str:
    """The pool for a filter of ``weight`` runner pods.

    Args:
        pools: every FilterPool with its load (the filter itself not counted).
        requested: ``spec.pool``, when the author named one.

    Raises:
        Unschedulable: the requested pool does not exist or is full, or no pool has room.
    """
    by_name = {p.name: p for p in pools}
    if requested is not None:
        pool = by_name.get(requested)
        if pool is None:
            raise Unschedulable(f"FilterPool {requested!r} does not exist")
        if not pool.ready:
            raise Unschedulable(f"FilterPool {requested!r} is being deleted")
        if pool.free < weight:
            raise Unschedulable(
                f"FilterPool {requested!r} is full ({pool.used}/{pool.capacity} runner pods used, {weight} needed)"
            )
        return requested
    fitting = [p for p in pools if p.ready and p.free >= weight]
    if not fitting:
        if not [p for p in pools if p.ready]:
            raise Unschedulable("no FilterPool exists" if not pools else "every FilterPool is being deleted")
        summary = ", ".join(f"{p.name} {p.used}/{p.capacity}" for p in sorted(pools, key=lambda p: p.name))
        raise Unschedulable(f"every FilterPool is full ({summary}); {weight} runner pod(s) needed")
    return min(fitting, key=lambda p: (-p.free, p.name)).name


def placement_of(
    namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[FilterKey, Placement]:
    """What the placement index holds for one AlertFilter: ``{(namespace, name): (pool, weight)}``
    when its status names a pool, else ``{}`` (nothing: not placed yet, or being deleted, so it no
    longer takes room)."""
    pool = status.get("pool")
    if not pool or meta.get("deletionTimestamp"):
        return {}
    return {(namespace, name): (str(pool), filter_weight(int(spec.get("replicas", 1))))}


def snapshot(index: PlacementIndex) -> dict[FilterKey, Placement]:
    """A plain copy of the index, one placement per filter.

    kopf's index is changed by the event loop while handlers run in worker threads; a copy that
    meets a change (``RuntimeError: dictionary changed size``) is simply taken again.

    Raises:
        RuntimeError: the index changed during every one of :data:`SNAPSHOT_ATTEMPTS` copies.
    """
    for attempt in range(SNAPSHOT_ATTEMPTS):
        try:
            return {key: value for key, values in list(index.items()) for value in list(values)[:1]}
        except RuntimeError:
            if attempt == SNAPSHOT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def merge_placements(
    indexed: Mapping[FilterKey, Placement], pending: dict[FilterKey, Placement]
) -> dict[FilterKey, Placement]:
    """The placement book: the index overlaid with this operator's own recent decisions.

    A decision is *pending* from when the operator makes it until the watch stream brings the
    filter's status back into the index; a second filter placed meanwhile must see it, or two
    filters could take a pool's last slot. Decisions the index now shows are dropped from
    ``pending`` (in place).

    Returns:
        ``{(namespace, name): (pool, runner pods)}`` of every placed filter.
    """
    for key in [k for k, v in pending.items() if indexed.get(k) == v]:
        del pending[key]
    return {**indexed, **pending}


def pool_loads(
    pools: Iterable[Mapping[str, Any]], book: Mapping[FilterKey, Placement], exclude: FilterKey | None = None
) -> list[PoolLoad]:
    """Every FilterPool's capacity and use, in runner pods.

    Args:
        pools: FilterPool bodies as the API returns them; a pool being deleted is kept, not
            ready (it takes no filter, and a filter that names it is told why); one whose spec
            does not parse is left out.
        book: the placement book (:func:`merge_placements`).
        exclude: a filter not to count (the one being placed).
    """
    used: dict[str, int] = defaultdict(int)
    for key, (pool, weight) in book.items():
        if key != exclude:
            used[pool] += weight
    loads = []
    for body in pools:
        try:
            spec = FilterPoolSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue
        name = body["metadata"]["name"]
        capacity = spec.capacity.nodes * spec.capacity.filtersPerNode
        loads.append(PoolLoad(name, capacity, used[name], ready=not body["metadata"].get("deletionTimestamp")))
    return loads


def pool_usage(book: Mapping[FilterKey, Placement], pool: str) -> int:
    """Runner pods placed in ``pool``."""
    return sum(w for p, w in book.values() if p == pool)


def filters_in(book: Mapping[FilterKey, Placement], pool: str) -> list[str]:
    """``namespace/name`` of every filter placed in ``pool``, sorted."""
    return sorted(f"{ns}/{n}" for (ns, n), (p, _) in book.items() if p == pool)
