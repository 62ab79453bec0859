"""The density benchmark's pure parts (``bench/density_model.py``): fresh ids in real-layout alerts,
the visit schedule, the filters' known verdicts and the latency percentiles it reports."""

from __future__ import annotations

import importlib.util
import io
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro
import pytest

from alertfilter.codecs import encode_confluent


def _load() -> ModuleType:
    # bench/ is not a package; load the module from its file
    path = Path(__file__).resolve().parents[2] / "bench" / "density_model.py"
    spec = importlib.util.spec_from_file_location("density_model", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["density_model"] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


dm = _load()

#: The layout of Rubin v10's first fields (ids and visit come first, strings and unions between).
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "alert",
    "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "observation_reason", "type": ["null", "string"]},
        {"name": "target_name", "type": ["null", "string"]},
        {
            "name": "diaSource",
            "type": {
                "type": "record",
                "name": "diaSource",
                "fields": [
                    {"name": "diaSourceId", "type": "long"},
                    {"name": "visit", "type": "long"},
                    {"name": "snr", "type": ["null", "float"]},
                ],
            },
        },
        {"name": "prvDiaSources", "type": ["null", {"type": "array", "items": "diaSource"}]},
        {"name": "cutoutDifference", "type": ["null", "bytes"]},
    ],
}


def _alert(i: int, reason: str | None) -> dict[str, Any]:
    src = {"diaSourceId": 169813006802223148 + i, "visit": 2025123100245, "snr": 12.5}
    return {
        "diaSourceId": src["diaSourceId"],
        "observation_reason": reason,
        "target_name": "ddf_edfs_b, lowdust",
        "diaSource": src,
        "prvDiaSources": [dict(src, visit=2025123100240 - k) for k in range(3)],
        "cutoutDifference": bytes(range(256)) * 40,
    }


def _decode(value: bytes) -> dict[str, Any]:
    rec = fastavro.schemaless_reader(io.BytesIO(value[5:]), fastavro.parse_schema(SCHEMA), None)
    assert isinstance(rec, dict)
    return rec


@pytest.mark.parametrize("new_id", [0, 1, 63, 64, 10**15 + 7, -5, 2**62])
@pytest.mark.parametrize("reason", [None, "ddf_edfs_b"])
def test_copy_sets_ids_and_visit_and_keeps_the_rest(new_id: int, reason: str | None) -> None:
    original = _alert(3, reason)
    value = encode_confluent(original, fastavro.parse_schema(SCHEMA), 1000)
    splicer = dm.Splicer(SCHEMA, ("diaSourceId", "diaSource.diaSourceId"), "diaSource.visit")
    copy = splicer.copy(value, new_id, 2026120300007)
    assert copy[:5] == value[:5]  # same schema id
    got = _decode(copy)
    assert got["diaSourceId"] == new_id and got["diaSource"]["diaSourceId"] == new_id
    assert got["diaSource"]["visit"] == 2026120300007
    assert got["diaSource"]["snr"] == original["diaSource"]["snr"]
    assert got["prvDiaSources"] == original["prvDiaSources"]  # histories keep their own ids and visits
    assert got["cutoutDifference"] == original["cutoutDifference"]
    assert dm.alert_id(copy) == new_id


def test_copy_of_a_path_not_in_the_schema_is_an_error() -> None:
    with pytest.raises(ValueError, match="'alertId' not found"):
        dm.Splicer(SCHEMA, ("alertId",), "diaSource.visit")
    with pytest.raises(ValueError, match=r"'diaSource\.ccdVisitId' not found"):
        dm.Splicer(SCHEMA, ("diaSourceId",), "diaSource.ccdVisitId")


def test_longs_round_trip() -> None:
    for n in [0, 1, -1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1]:
        enc = dm.encode_long(n)
        assert dm.decode_long(enc + b"\x00", 0) == (n, len(enc))
    with pytest.raises(ValueError, match="truncated"):
        dm.decode_long(b"\x80\x80", 0)


def test_schedule_nominal_visits_then_one_peak() -> None:
    sched = dm.visit_schedule(3, 10_000, 40_000, 39.0, 2026120300000)
    assert [v.start_s for v in sched] == [0.0, 39.0, 78.0, 117.0]
    assert [v.size for v in sched] == [10_000, 10_000, 10_000, 40_000]
    assert [v.peak for v in sched] == [False, False, False, True]
    assert [v.first_seq for v in sched] == [0, 10_000, 20_000, 30_000]
    assert [v.visit_id for v in sched] == [2026120300000 + i for i in range(4)]
    assert dm.visit_of(29_999, sched) is sched[2] and dm.visit_of(70_000, sched) is None
    assert not any(v.peak for v in dm.visit_schedule(2, 5, 0, 1.0, 1))


@pytest.mark.parametrize(
    ("args", "match"), [((-1, 1, 0, 1.0), "negative"), ((1, 1, 0, 0.0), "cadence"), ((0, 10, 0, 39.0), "no alert")]
)
def test_schedule_refuses_bad_input(args: tuple[int, int, int, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dm.visit_schedule(*args, 1)


def test_each_filter_accepts_its_share_of_every_visit() -> None:
    sched = dm.visit_schedule(2, 10_000, 40_000, 39.0, 1)
    for v in sched:
        for residue in (0, 7, 49):
            seqs = dm.accepted_seqs(v, residue)
            assert all(s % dm.ACCEPT_MODULUS == residue for s in seqs)
            assert len(seqs) == v.size // dm.ACCEPT_MODULUS
    odd = dm.Visit(0, 0.0, 7, 1, 13, False)  # 13..19: residue 15 only
    assert list(dm.accepted_seqs(odd, 15)) == [15] and list(dm.accepted_seqs(odd, 3)) == []


def test_percentiles_and_missing_alerts_count_as_late() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert dm.percentile(xs, 50) == 50 and dm.percentile(xs, 98) == 98 and dm.percentile(xs, 100) == 100
    assert math.isnan(dm.percentile([], 50))
    with pytest.raises(ValueError, match="0-100"):
        dm.percentile(xs, 101)
    s = dm.summarise([1.0] * 97, 100)
    assert (s.missing, s.p50_s, s.p98_s) == (3, 1.0, math.inf) and not s.ok
    s = dm.summarise([1.0] * 98 + [70.0, 80.0], 100)
    assert s.p98_s == 1.0 and s.max_s == 80.0 and s.within_limit == 0.98 and s.ok
    with pytest.raises(ValueError, match="expected"):
        dm.summarise([1.0, 2.0], 1)


def test_n_max_is_the_last_pass_before_the_first_failure() -> None:
    assert dm.n_max({5: True, 10: True, 20: False, 40: False}) == (10, 20)
    assert dm.n_max({5: False}) == (0, 5)
    assert dm.n_max({5: True, 10: True}) == (10, None)


def test_sweep_goes_up_until_a_failure_then_bisects() -> None:
    ns = [5, 10, 20, 40]
    assert dm.next_n({}, ns, 1) == (5, False)
    assert dm.next_n({5: True, 10: True}, ns, 1) == (20, False)
    assert dm.next_n({5: True, 10: True, 20: True, 40: True}, ns, 1) == (80, False)  # until it breaks
    assert dm.next_n({5: True, 10: True, 20: False}, ns, 1) == (15, True)
    assert dm.next_n({5: True, 10: True, 20: False}, ns, 0) == (None, False)
    assert dm.next_n({5: False}, ns, 1) == (2, False)  # the smallest failed: look below it
    assert dm.next_n({5: False, 2: True}, ns, 1) == (3, True)
    assert dm.next_n({5: False, 2: False}, ns, 1) == (1, False)
    assert dm.next_n({5: False, 2: False, 1: False}, ns, 1) == (None, False)
    assert dm.next_n({2: True, 3: False}, ns, 5) == (None, False)  # bracketed to one


def test_per_node_estimates() -> None:
    est = dm.per_node(25, 2, runner_millicores=60.0, runner_mib=300.0)
    assert est["linear"] == 200
    assert est["by_cpu"] == 250 and est["by_memory"] == pytest.approx(60 * 1024 / 300)
    assert est["requests"] == est["by_memory"]
    assert dm.per_node(0, 2, None, None)["requests"] is None


def test_a_step_whose_feed_fell_behind_the_cadence_is_not_a_pass_at_the_nominal_rate():
    def visit(i: int, late: float, produce: float, peak: bool = False) -> dict[str, Any]:
        return {"visit": i, "peak": peak, "started_late_s": late, "produce_s": produce, "ok": True}

    on_time = [visit(0, 0.0, 28.0), visit(1, 1.2, 36.0), visit(2, 90.0, 200.0, peak=True)]
    assert dm.cadence_problem(on_time, 39.0) is None  # a peak visit may take longer: it is not nominal
    late = [visit(0, 0.0, 28.0), visit(1, 27.0, 66.0)]
    assert dm.cadence_problem(late, 39.0) == (
        "the feed did not hold the nominal rate: visit 1 started 27 s late and took 66 s to produce (cadence 39 s)"
    )
