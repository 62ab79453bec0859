"""The per-visit cap, exact when visits interleave."""

import json

import pytest

from alertfilter.cap import VisitCap


def test_cap_is_exact_when_visits_interleave():
    cap = VisitCap(3)
    # The original runner reset its counter on every visit change: a,b,a,b,... never reached the cap.
    admitted = [v for v in ["a", "b"] * 10 if cap.admit(v)]
    assert admitted.count("a") == 3 and admitted.count("b") == 3


def test_default_is_twenty_per_visit():
    cap = VisitCap()
    assert sum(cap.admit(1) for _ in range(50)) == 20


def test_no_cap():
    cap = VisitCap(None)
    assert all(cap.admit(7) for _ in range(1000))
    assert len(cap) == 0


def test_zero_cap_admits_nothing():
    assert not VisitCap(0).admit(1)


def test_memory_is_bounded_to_recent_visits():
    cap = VisitCap(1, max_visits=100)
    for v in range(10_000):
        cap.admit(v)
    assert len(cap) == 100
    assert cap.count(9_999) == 1 and cap.count(0) == 0


def test_recently_seen_visits_are_kept():
    cap = VisitCap(1, max_visits=2)
    cap.admit("old")
    cap.admit("new")
    assert not cap.admit("old")  # seen again: now most recent
    cap.admit("newest")  # evicts "new", not "old"
    assert not cap.admit("old")


def test_negative_cap_is_refused():
    with pytest.raises(ValueError, match="max_per_visit must be >= 0"):
        VisitCap(-1)


def test_snapshot_restores_counts_across_restarts():
    cap = VisitCap(5)
    for v in [10, 11, 10, 12, 10]:
        cap.admit(v)
    again = VisitCap(5)
    again.restore([cap.snapshot(), "garbage,::,x:y", "", "10:4,11:4"])  # the last: the old format, ignored
    assert again.count(10) == 3 and again.count(11) == 1 and again.count(12) == 1
    assert sum(again.admit(10) for _ in range(5)) == 2


def test_snapshot_respects_its_size_limit_keeping_recent_visits():
    cap = VisitCap(5, max_visits=10_000)
    for v in range(2025123100000, 2025123100000 + 1000):
        cap.admit(v)
    snap = cap.snapshot(max_bytes=300)
    assert len(snap.encode()) <= 300
    assert snap.endswith(f"[{2025123100000 + 999},1]]")  # the most recent visit is last
    assert json.loads(snap)[0] == [2025123100000 + 1000 - len(json.loads(snap)), 1]


def test_restore_keeps_the_largest_count():
    cap = VisitCap(5)
    cap.restore(["[[7,2]]", "[[7,4]]", [[7, 1]]])
    assert cap.count(7) == 4


@pytest.mark.parametrize("visit", ["12", "a,b", "x:1", "-5", "", "visité", 12, -3, 2**62])
def test_snapshot_keeps_string_and_int_visits_as_they_were(visit):
    # "12" and 12 are different visits; commas and colons inside string visits are just characters
    cap = VisitCap(3)
    for _ in range(2):
        cap.admit(visit)
    cap.admit(12 if visit != 12 else "12")
    again = VisitCap(3)
    again.restore([cap.snapshot()])
    assert again.count(visit) == 2 and type(next(iter(again._counts))) is type(visit)
    assert again.count(12 if visit != 12 else "12") == 1
    assert again.admit(visit) and not again.admit(visit)  # the third, then capped


def test_restore_ignores_what_is_not_an_int_or_string_visit():
    cap = VisitCap(3)
    cap.restore(['[[1.5,2],[true,2],[null,2],[[1],2],{"a":1},[7,-1],[7,"2"],[8,2,3],[9,2]]', "not json", "[1,2]"])
    assert list(cap._counts.items()) == [(9, 2)]


def test_checkpoint_and_rollback():
    cap = VisitCap(2)
    cap.admit(1)
    cp = cap.checkpoint()
    cap.admit(1)
    assert not cap.admit(1)
    cap.rollback(cp)
    assert cap.count(1) == 1 and cap.admit(1)
