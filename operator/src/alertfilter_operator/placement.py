"""Placement of AlertFilters into FilterPools (pure).

A filter without ``spec.pool`` goes to the pool with the most free capacity, ties broken by pool
name, so the choice is deterministic for a given state. A pool never takes more than its capacity
(``nodes x filtersPerNode`` runner pods); when no pool can take a filter it is unschedulable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolLoad:
    """A pool's capacity and what is placed in it, in runner pods."""

    name: str
    capacity: int
    used: int
    ready: bool = True

    @property
    def free(self) -> int:
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
        if pool.free < weight:
            raise Unschedulable(
                f"FilterPool {requested!r} is full ({pool.used}/{pool.capacity} runner pods used, {weight} needed)"
            )
        return requested
    fitting = [p for p in pools if p.free >= weight]
    if not fitting:
        if not pools:
            raise Unschedulable("no FilterPool exists")
        summary = ", ".join(f"{p.name} {p.used}/{p.capacity}" for p in sorted(pools, key=lambda p: p.name))
        raise Unschedulable(f"every FilterPool is full ({summary}); {weight} runner pod(s) needed")
    return min(fitting, key=lambda p: (-p.free, p.name)).name
