"""Which pool a filter lands in, and the placement book the operator keeps from kopf's index."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from alertfilter_operator.placement import (
    FilterKey,
    Placement,
    PoolLoad,
    Unschedulable,
    choose_pool,
    filter_weight,
    filters_in,
    merge_placements,
    placement_of,
    pool_loads,
    pool_usage,
    snapshot,
)

from .conftest import pool_spec


def test_an_unnamed_pool_is_the_one_with_most_room_ties_by_name() -> None:
    pools = [PoolLoad("b", 10, 2), PoolLoad("a", 10, 2), PoolLoad("c", 100, 99)]
    assert choose_pool(pools, 1) == "a"
    assert choose_pool([PoolLoad("b", 10, 0), PoolLoad("a", 10, 5)], 1) == "b"
    # the roomiest pool that fits, not the roomiest that does not
    assert choose_pool([PoolLoad("big", 100, 98), PoolLoad("small", 4, 0)], 3) == "small"


def test_a_named_pool_is_used_while_it_has_room() -> None:
    assert choose_pool([PoolLoad("a", 10, 0), PoolLoad("b", 2, 1)], 1, requested="b") == "b"
    with pytest.raises(Unschedulable, match=r"FilterPool 'b' is full \(2/2 runner pods used, 1 needed\)"):
        choose_pool([PoolLoad("a", 10, 0), PoolLoad("b", 2, 2)], 1, requested="b")
    with pytest.raises(Unschedulable, match="FilterPool 'x' does not exist"):
        choose_pool([PoolLoad("a", 10, 0)], 1, requested="x")


def test_no_room_anywhere_says_how_full_each_pool_is() -> None:
    with pytest.raises(Unschedulable, match=r"every FilterPool is full \(a 2/2, b 5/6\); 2 runner pod\(s\) needed"):
        choose_pool([PoolLoad("b", 6, 5), PoolLoad("a", 2, 2)], 2)
    with pytest.raises(Unschedulable, match="no FilterPool exists"):
        choose_pool([], 1)


def test_a_filter_takes_its_runner_pods_and_a_suspended_one_keeps_a_slot() -> None:
    assert [filter_weight(r) for r in (0, 1, 3)] == [1, 1, 3]
    assert PoolLoad("a", 2, 5).free == 0


def test_the_index_holds_placed_filters_only() -> None:
    placed = placement_of("sci", "f", {"replicas": 2}, {"pool": "a"}, {})
    assert placed == {("sci", "f"): ("a", 2)}
    assert placement_of("sci", "f", {}, {"pool": "a"}, {}) == {("sci", "f"): ("a", 1)}
    assert placement_of("sci", "f", {}, {}, {}) == {}
    # a filter being deleted gives its room back at once
    assert placement_of("sci", "f", {}, {"pool": "a"}, {"deletionTimestamp": "2026-12-03T10:00:00Z"}) == {}


def test_a_decision_counts_until_the_index_shows_it() -> None:
    pending: dict[FilterKey, Placement] = {("s", "new"): ("a", 1), ("s", "moved"): ("b", 2)}
    indexed = {("s", "old"): ("a", 3), ("s", "moved"): ("b", 1)}
    book = merge_placements(indexed, pending)
    assert book == {("s", "old"): ("a", 3), ("s", "new"): ("a", 1), ("s", "moved"): ("b", 2)}
    assert pending == {("s", "new"): ("a", 1), ("s", "moved"): ("b", 2)}
    book = merge_placements({**indexed, ("s", "new"): ("a", 1)}, pending)
    assert ("s", "new") in book and pending == {("s", "moved"): ("b", 2)}


class _ChangingIndex(Mapping[FilterKey, list[Placement]]):
    """An index the event loop changes during the first ``fail`` copies."""

    def __init__(self, data: dict[FilterKey, list[Placement]], fail: int) -> None:
        self.data, self.fail = data, fail

    def __getitem__(self, key: FilterKey) -> list[Placement]:
        return self.data[key]

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[FilterKey]:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return iter(self.data)


def test_snapshot_copies_one_placement_per_filter_even_while_the_index_changes() -> None:
    data: dict[FilterKey, list[Placement]] = {("s", "a"): [("p", 1)], ("s", "b"): [("q", 2)], ("s", "c"): []}
    assert snapshot(_ChangingIndex(data, fail=3)) == {("s", "a"): ("p", 1), ("s", "b"): ("q", 2)}
    with pytest.raises(RuntimeError):
        snapshot(_ChangingIndex(data, fail=100))


def _pool(name: str, nodes: int, per_node: int, **meta: Any) -> dict[str, Any]:
    spec = pool_spec(capacity={"nodes": nodes, "filtersPerNode": per_node}).model_dump(by_alias=True)
    return {"metadata": {"name": name, **meta}, "spec": spec}


def test_pool_loads_count_every_placed_filter_but_the_one_being_placed() -> None:
    book = {("s", "x"): ("a", 2), ("s", "y"): ("a", 1), ("t", "z"): ("b", 4)}
    pools = [
        _pool("a", 1, 5),
        _pool("b", 2, 2),
        _pool("gone", 9, 9, deletionTimestamp="2026-12-03T10:00:00Z"),
        {"metadata": {"name": "broken"}, "spec": {"capacity": {"nodes": 0}}},
    ]
    assert pool_loads(pools, book) == [PoolLoad("a", 5, 3), PoolLoad("b", 4, 4), PoolLoad("gone", 81, 0, ready=False)]
    assert pool_loads(pools, book, exclude=("s", "x"))[0] == PoolLoad("a", 5, 1)
    assert pool_usage(book, "a") == 3 and pool_usage(book, "none") == 0
    assert filters_in(book, "a") == ["s/x", "s/y"]
