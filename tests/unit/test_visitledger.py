"""The cap stage's ledger: the first N distinct alerts of each visit, a copy never counted twice, and
its state through a snapshot (the commit metadata) as exact as it fits."""

from __future__ import annotations

import json

import pytest

from alertfilter.cap import VisitCap
from alertfilter.visitledger import Verdict, VisitLedger, merged_counts

A, D, C = Verdict.ADMITTED, Verdict.DUPLICATE, Verdict.CAPPED


def src(offset: int, partition: int = 0, topic: str = "alerts") -> tuple[str, int, int]:
    return (topic, partition, offset)


def test_first_n_distinct_per_visit_when_visits_interleave() -> None:
    ledger = VisitLedger(2)
    got = [ledger.admit(v, src(i)) for i, v in enumerate(["a", "b", "a", "b", "a", "b"])]
    assert got == [A, A, A, A, C, C]
    assert ledger.count("a") == ledger.count("b") == 2


def test_a_copy_of_an_admitted_alert_is_a_duplicate_and_takes_no_slot() -> None:
    ledger = VisitLedger(2)
    assert [ledger.admit(7, s) for s in (src(1), src(1), src(2), src(1), src(3))] == [A, D, A, D, C]
    # the same offset of another partition or topic is another alert
    assert VisitLedger(3).admit(7, src(1, 1)) == A
    fresh = VisitLedger(3)
    assert [fresh.admit(7, s) for s in (src(1), src(1, 1), src(1, 0, "lean"))] == [A, A, A]


def test_a_copy_of_a_capped_alert_stays_capped() -> None:
    ledger = VisitLedger(1)
    assert [ledger.admit(1, s) for s in (src(1), src(2), src(2))] == [A, C, C]


def test_visits_are_typed_and_memory_is_bounded() -> None:
    ledger = VisitLedger(1, max_visits=10)
    assert ledger.admit(12, src(1)) == A and ledger.admit("12", src(2)) == A
    for v in range(100):
        ledger.admit(1000 + v, src(v))
    assert len(ledger) == 10 and ledger.count(12) == 0


def test_the_seed_counts_an_earlier_cap() -> None:
    ledger = VisitLedger(3, seed={5: 2, 6: 9})
    assert [ledger.admit(5, src(i)) for i in range(3)] == [A, C, C]
    assert ledger.admit(6, src(10)) == C and ledger.count(6) == 9
    assert ledger.admit(7, src(11)) == A


def test_snapshot_and_restore_keep_counts_and_sources() -> None:
    ledger = VisitLedger(3)
    for i, v in enumerate([1, 2, 1, "x", 1, 1]):
        ledger.admit(v, src(i, i % 2))
    text = ledger.snapshot()
    assert json.loads(text)[-1] == [1, 3, {"alerts": [[0, 0], [0, 2], [0, 4]]}]
    again = VisitLedger(3)
    again.restore(text)
    assert again.counts() == ledger.counts()
    assert again.admit(1, src(2)) == D and again.admit(2, src(1, 1)) == D and again.admit(2, src(9)) == A


def test_snapshot_fits_its_bound_keeping_the_most_recent_visits_whole() -> None:
    ledger = VisitLedger(20)
    for v in range(50):
        for i in range(20):
            ledger.admit(v, src(10_000_000 + v * 100 + i, v % 3))
    text = ledger.snapshot(3000)
    items = json.loads(text)
    assert len(text.encode()) <= 3000
    assert items[-1][0] == 49 and len(items[-1]) == 3 and len(items[-1][2]["alerts"]) == 20
    assert len([i for i in items if len(i) == 3]) >= 8  # ~300 bytes a visit
    assert all(i[1] == 20 for i in items)
    assert VisitLedger(20).snapshot() == "[]"


@pytest.mark.parametrize(
    "text",
    ["", "not json", "{}", '[["a"]]', "[[true, 1]]", "[[1, -1]]", '[[1, 1, {"t": [[1, "x"]]}]]', "[[1.5, 1]]"],
)
def test_restore_ignores_what_it_cannot_read(text: str) -> None:
    ledger = VisitLedger(2)
    ledger.restore(text)
    assert all(isinstance(v, int) and n >= 0 for v, n in ledger.counts()) and len(ledger) <= 1


def test_restore_merges_the_largest_count_and_every_source() -> None:
    ledger = VisitLedger(5)
    ledger.restore('[[1, 2, {"t": [[0, 1], [0, 2]]}]]')
    ledger.restore('[[1, 3, {"t": [[0, 3]]}], [2, 1]]')
    assert ledger.counts() == [[1, 3], [2, 1]]
    assert ledger.admit(1, ("t", 0, 1)) == D and ledger.admit(1, ("t", 0, 9)) == A


def test_rollback_returns_to_a_checkpoint() -> None:
    ledger = VisitLedger(2)
    ledger.admit(1, src(1))
    cp = ledger.checkpoint()
    ledger.admit(1, src(2))
    ledger.admit(2, src(3))
    ledger.rollback(cp)
    assert ledger.counts() == [[1, 1]] and ledger.admit(1, src(2)) == A


def test_counts_seed_the_in_process_cap_and_back() -> None:
    ledger = VisitLedger(3)
    for i in range(5):
        ledger.admit("v", src(i))
    cap = VisitCap(3)
    cap.restore([ledger.counts()])
    assert not cap.admit("v")
    assert merged_counts([[["v", 2], [1, 1]], None, [["v", 3], ["bad"]]]) == {"v": 3, 1: 1}


def test_a_replay_counts_afresh_and_its_snapshot_says_so() -> None:
    ledger = VisitLedger(2, seed={1: 2})
    assert ledger.admit(1, src(1)) == C  # the seed, counted before any replay
    assert ledger.admit(1, src(1), generation=3) == A and ledger.count(1) == 1  # afresh, seed no longer counts
    assert ledger.admit(1, src(2), generation=2) == A  # written before the replay: counted with the rest
    text = ledger.snapshot()
    assert text.startswith('{"g":3,"v":[') and json.loads(text)["v"][0][:2] == [1, 2]
    again = VisitLedger(2)
    again.restore("[[1, 1]]")
    again.restore(text)  # a later generation replaces
    again.restore("[[9, 1]]")  # an earlier one is ignored
    assert (again.generation, again.counts()) == (3, [[1, 2]])
    cp = again.checkpoint()
    again.admit(5, src(9), generation=4)
    again.rollback(cp)
    assert (again.generation, again.counts()) == (3, [[1, 2]])
    seeded = VisitLedger(2, seed={1: 2}, seed_generation=3)
    assert seeded.admit(1, src(1), generation=3) == C and seeded.admit(1, src(1), generation=4) == A
