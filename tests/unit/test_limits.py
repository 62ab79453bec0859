"""spec.limits on the runner's side (alertfilter.limits): each limit trips at the exact count, bytes
or rate; a UTC midnight and the next window reset them (an injected clock); the state survives a
restart through the committed offsets' metadata; the alerts past a limit are counted as limited,
committed, and show on /metrics."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.convert import SettingError
from alertfilter.limits import (
    MAX_ACCEPTED_PER_DAY,
    MAX_BYTES_PER_DAY,
    MAX_MATCH_RATE,
    MIN_MATCH_WINDOW,
    LimitGuard,
    Limits,
    utc_day,
)
from alertfilter.metrics import RunnerMetrics
from alertfilter.offsets import decode_commit_metadata, decode_limits_metadata, encode_commit_metadata
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings, from_env, runner_env

from .kafka_fakes import FakeConsumer, FakeProducer, Msg, container
from .test_runner import InlineFilters

NOON = dt.datetime(2026, 12, 3, 12, 3, 11, tzinfo=dt.UTC).timestamp()


class Clock:
    """An injected clock, Unix s."""

    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def guard(clock: Clock | None = None, **limits: Any) -> LimitGuard:
    return LimitGuard(Limits(**limits), clock or Clock())


# --- each limit trips exactly where it says ----------------------------------------------------------
def test_max_accepted_per_day_forwards_exactly_n_then_nothing_for_the_rest_of_the_day():
    g = guard(max_accepted_per_day=5)
    trips: list[tuple[str, str]] = []
    g.on_trip = lambda name, msg: trips.append((name, msg))
    assert [g.admit(100) for _ in range(5)] == [True] * 5
    assert trips == [
        (MAX_ACCEPTED_PER_DAY, "maxAcceptedPerDay 5 reached at 12:03:11 UTC; forwarding resumes at 00:00 UTC")
    ]
    assert g.limited_now(MAX_ACCEPTED_PER_DAY) and g.tripped_at(MAX_ACCEPTED_PER_DAY) == int(NOON)
    assert [g.admit(100) for _ in range(3)] == [False] * 3
    assert g.limited == {MAX_ACCEPTED_PER_DAY: 3, MAX_BYTES_PER_DAY: 0, MAX_MATCH_RATE: 0}
    assert g.trips[MAX_ACCEPTED_PER_DAY] == 1  # tripped once, however many alerts it stops


def test_max_bytes_per_day_never_forwards_more_than_the_bytes():
    g = guard(max_bytes_per_day=1000)
    assert [g.admit(n) for n in (400, 400)] == [True, True]
    assert not g.limited_now(MAX_BYTES_PER_DAY)
    assert g.admit(300) is False  # 1100 > 1000: not forwarded, and the limit trips
    assert g.limited_now(MAX_BYTES_PER_DAY)
    assert g.admit(1) is False  # the rest of the day, even an alert that would fit


def test_max_bytes_per_day_reached_exactly_trips():
    g = guard(max_bytes_per_day=1000)
    assert [g.admit(n) for n in (400, 600)] == [True, True]
    assert g.limited_now(MAX_BYTES_PER_DAY) and g.admit(1) is False


def test_max_match_rate_forwards_at_most_its_share_of_the_window_then_resumes_with_the_next():
    g = guard(max_match_rate=0.05)  # the window: 1000 alerts, so at most 50 accepted
    messages: list[str] = []
    g.on_trip = lambda name, msg: messages.append(msg)
    forwarded = []
    for _i in range(MIN_MATCH_WINDOW):
        g.count(True)  # a filter that accepts everything
        forwarded.append(g.admit(10))
    assert forwarded == [True] * 50 + [False] * 950
    assert g.trips[MAX_MATCH_RATE] == 1
    assert messages[0].startswith("maxMatchRate 0.05 passed at 12:03:11 UTC: 51 of the 51 alerts of the window")
    assert not g.limited_now(MAX_MATCH_RATE)  # the window's 1000 alerts are through: over
    g.count(True)
    assert g.admit(10) is True  # a new window


def test_max_match_rate_is_exact_where_floating_point_is_not():
    g = guard(max_match_rate=0.29)  # 0.29 * 1000 is 289.99999999999994 in floating point
    assert g.match_allowed == 290
    for _ in range(290):
        g.count(True)
    assert not g.limited_now(MAX_MATCH_RATE)
    g.count(True)
    assert g.limited_now(MAX_MATCH_RATE)


def test_a_rate_under_the_limit_never_trips():
    g = guard(max_match_rate=0.1)
    for i in range(5 * MIN_MATCH_WINDOW):
        g.count(i % 10 == 0)  # exactly 10 %
        assert g.admit(1) if i % 10 == 0 else True
    assert g.trips[MAX_MATCH_RATE] == 0


def test_a_larger_window_counts_its_own_alerts():
    g = guard(max_match_rate=0.5, match_window=4000)
    for _ in range(2000):
        g.count(True)
    assert not g.limited_now(MAX_MATCH_RATE)
    g.count(True)
    assert g.limited_now(MAX_MATCH_RATE)


# --- a new UTC day resets the per-day limits ---------------------------------------------------------------
def test_the_next_utc_day_resets_the_per_day_limits():
    clock = Clock(dt.datetime(2026, 12, 3, 23, 59, 58, tzinfo=dt.UTC).timestamp())
    g = guard(clock, max_accepted_per_day=2, max_bytes_per_day=10_000)
    assert [g.admit(10) for _ in range(3)] == [True, True, False]
    assert g.limited_now(MAX_ACCEPTED_PER_DAY)
    clock.t += 2  # 00:00:00 UTC
    assert not g.limited_now(MAX_ACCEPTED_PER_DAY)  # /metrics says so before any alert comes
    assert g.tripped_at(MAX_ACCEPTED_PER_DAY) is None
    assert [g.admit(10) for _ in range(3)] == [True, True, False]
    assert g.trips[MAX_ACCEPTED_PER_DAY] == 2


def test_the_match_window_does_not_reset_at_midnight():
    clock = Clock(dt.datetime(2026, 12, 3, 23, 59, 59, tzinfo=dt.UTC).timestamp())
    g = guard(clock, max_match_rate=0.001)  # one alert in a window of 1000
    for _ in range(2):
        g.count(True)
    clock.t += 10
    assert g.limited_now(MAX_MATCH_RATE) and g.admit(1) is False


# --- bad limits are refused with a clear message --------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_accepted_per_day": 0}, "positive integer"),
        ({"max_bytes_per_day": -5}, "positive integer"),
        ({"max_accepted_per_day": 1.5}, "positive integer"),
        ({"max_match_rate": 0.0}, "more than 0 and at most 1"),
        ({"max_match_rate": 1.01}, "more than 0 and at most 1"),
        ({"max_match_rate": float("nan")}, "more than 0 and at most 1"),
        ({"match_window": 999}, "at least 1000"),
    ],
)
def test_limits_out_of_bounds_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Limits(**kwargs)


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("ALERTFILTER_MAX_ACCEPTED_PER_DAY", "0", "must be >= 1"),
        ("ALERTFILTER_MAX_BYTES_PER_DAY", "lots", "expected an integer"),
        ("ALERTFILTER_MAX_MATCH_RATE", "5%", "expected a fraction"),
        ("ALERTFILTER_MAX_MATCH_RATE", "2", "more than 0 and at most 1"),
        ("ALERTFILTER_MATCH_RATE_WINDOW", "100", "between 1000 and"),
    ],
)
def test_the_runner_refuses_bad_limit_variables_naming_them(var, value, words):
    with pytest.raises(SettingError, match=words) as info:
        from_env({var: value})
    assert var in str(info.value)


def test_the_operator_renders_the_limits_as_the_runner_reads_them():
    env = runner_env({"max-accepted-per-day": 500, "max-bytes-per-day": 10**8, "max-match-rate": 0.05})
    assert env == {
        "ALERTFILTER_MAX_ACCEPTED_PER_DAY": "500",
        "ALERTFILTER_MAX_BYTES_PER_DAY": "100000000",
        "ALERTFILTER_MAX_MATCH_RATE": "0.05",
    }
    assert from_env(env) == {
        "max_accepted_per_day": 500,
        "max_bytes_per_day": 10**8,
        "max_match_rate": 0.05,
    }


# --- the state survives a restart through the committed metadata ----------------------------------------
def test_snapshot_restores_today_and_forgets_an_earlier_day():
    clock = Clock()
    g = guard(clock, max_accepted_per_day=3, max_match_rate=0.5)
    for _ in range(3):
        g.count(True)
        g.admit(5)
    snap = g.snapshot()
    assert snap is not None and len(json.dumps(snap)) < 200  # small and bounded: a few fixed fields
    again = guard(clock, max_accepted_per_day=3, max_match_rate=0.5)
    again.restore([snap])
    assert again.limited_now(MAX_ACCEPTED_PER_DAY) and again.admit(5) is False
    assert again.snapshot()["window"][1:3] == [3, 3]  # type: ignore[index]
    tomorrow = guard(Clock(NOON + 86_400), max_accepted_per_day=3, max_match_rate=0.5)
    tomorrow.restore([snap])
    assert not tomorrow.limited_now(MAX_ACCEPTED_PER_DAY) and tomorrow.admit(5) is True
    assert tomorrow.snapshot()["window"][1] == 3  # type: ignore[index]  # the window goes on across days


def test_restore_merges_partitions_largest_counts_and_ignores_junk():
    clock = Clock()
    g = guard(clock, max_accepted_per_day=100, max_bytes_per_day=10**6)
    day = "2026-12-03"
    g.restore(
        [
            {"day": day, "accepted": 40, "bytes": 900},
            {"day": day, "accepted": 10, "bytes": 5000},
            {"day": "2026-12-02", "accepted": 99, "bytes": 1},
            {"day": day, "accepted": -1, "bytes": 0},
            {"day": day, "accepted": True, "bytes": 0},
            "not json",
            None,
            [1, 2],
        ]
    )
    assert g.snapshot() == {"day": day, "accepted": 40, "bytes": 5000}


def test_a_runner_restarted_with_a_raised_limit_forwards_again_and_with_a_lowered_one_stops():
    clock = Clock()
    g = guard(clock, max_accepted_per_day=3, max_bytes_per_day=100, max_match_rate=0.003)
    for _ in range(4):
        g.count(True)
        g.admit(10)
    snap = g.snapshot()  # maxAcceptedPerDay (3 forwarded) and maxMatchRate (4 of at most 3 accepted) tripped
    same = guard(clock, max_accepted_per_day=3, max_bytes_per_day=100, max_match_rate=0.003)
    same.restore([snap])
    assert same.limited_now(MAX_ACCEPTED_PER_DAY) and same.limited_now(MAX_MATCH_RATE)
    raised = guard(clock, max_accepted_per_day=10, max_bytes_per_day=100, max_match_rate=0.01)
    raised.restore([snap])
    assert not raised.limited_now(MAX_ACCEPTED_PER_DAY) and not raised.limited_now(MAX_MATCH_RATE)
    raised.count(True)
    assert raised.admit(10) is True
    lowered = guard(clock, max_accepted_per_day=2)
    lowered.restore([snap])
    assert lowered.admit(10) is False and lowered.limited_now(MAX_ACCEPTED_PER_DAY)  # 3 already forwarded today


def test_a_restore_after_midnight_does_not_mix_yesterdays_counts():
    clock = Clock()
    g = guard(clock, max_accepted_per_day=5)
    for _ in range(4):
        g.admit(1)
    clock.t += 86_400  # no alert since midnight
    g.restore([{"day": utc_day(clock.t), "accepted": 2, "bytes": 2}])
    assert g.snapshot()["accepted"] == 2  # type: ignore[index]


def test_commit_metadata_carries_the_cap_and_the_limits():
    meta = encode_commit_metadata("[[9,2]]", {"day": "2026-12-03", "accepted": 4, "bytes": 40})
    assert meta is not None and len(meta) < 4096
    assert decode_commit_metadata(meta) == [[9, 2]]
    assert decode_limits_metadata(meta) == {"day": "2026-12-03", "accepted": 4, "bytes": 40}
    assert decode_limits_metadata(encode_commit_metadata(None, {"day": "2026-12-03", "accepted": 0, "bytes": 0}))
    assert encode_commit_metadata("[[9,2]]") == "[[9,2]]"  # no limit: the form earlier runners wrote
    for junk in (None, "", "[[9,2]]", "{", '{"limits": 3}'):
        assert decode_limits_metadata(junk) is None


def make(clock: Clock, limits: Limits, committed: dict[int, str] | None = None) -> Runner:
    settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g")
    consumer = FakeConsumer({})
    consumer.committed_meta = dict(committed or {})
    clients = KafkaClients(consumer, FakeProducer({"message.max.bytes": settings.max_message_bytes}))
    src = "def f(a):\n    return a['diaSourceId'] % 2 == 0\n"
    r = Runner(settings, clients, InlineFilters(src), VisitCap(None), "f", "0" * 64, limits=LimitGuard(limits, clock))
    r.on_assign(r.consumer, [TopicPartition("in", 0)])
    return r


def forwarded(r: Runner) -> list[bytes | None]:
    return [d.value for d in r.producer.delivered if d.topic() == "out"]


def test_the_runner_counts_limited_alerts_commits_them_and_a_restart_keeps_the_limit():
    clock = Clock()
    r = make(clock, Limits(max_accepted_per_day=3))
    msgs = [Msg(i, container(i)) for i in range(10)]  # even ids accepted: 5 of them
    r.process_batch(msgs)
    assert len(forwarded(r)) == 3
    assert r.totals["limited"] == 2 and r.totals["rejected"] == 5 and r.totals["consumed"] == 10
    last = r.consumer.commits[-1][0]
    assert last.offset == 10  # every alert committed: nothing is read again
    assert decode_limits_metadata(last.metadata)["tripped"] == {MAX_ACCEPTED_PER_DAY: [int(NOON), 3]}  # type: ignore[index]

    again = make(clock, Limits(max_accepted_per_day=3), {0: last.metadata})  # a restarted runner
    again.process_batch([Msg(10 + i, container(10 + i)) for i in range(4)])
    assert forwarded(again) == [] and again.totals["limited"] == 2

    clock.t += 86_400  # the next UTC day
    again.process_batch([Msg(14 + i, container(14 + i)) for i in range(4)])
    assert len(forwarded(again)) == 2 and again.totals["limited"] == 2


def test_a_rewound_batch_is_counted_once():
    from confluent_kafka import KafkaError

    clock = Clock()
    r = make(clock, Limits(max_accepted_per_day=4))
    r.consumer.commit_errors = [KafkaError(KafkaError.REBALANCE_IN_PROGRESS)]
    r.process_batch([Msg(i, container(i)) for i in range(4)])  # 2 accepted, then the commit fails: rewound
    assert r.limits.snapshot()["accepted"] == 0  # type: ignore[index]
    r.process_batch([Msg(i, container(i)) for i in range(4)])  # read again
    assert r.limits.snapshot()["accepted"] == 2  # type: ignore[index]


def scrape(metrics: RunnerMetrics) -> dict[str, float]:
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if "limit" in s.name
    }


def test_metrics_show_the_trip_and_the_limited_alerts_and_the_reset():
    clock = Clock()
    r = make(clock, Limits(max_accepted_per_day=1, max_match_rate=0.5))
    r.process_batch([Msg(i, container(i)) for i in range(6)])
    seen = scrape(r.metrics)
    acc = json.dumps({"limit": MAX_ACCEPTED_PER_DAY})
    assert seen["alertfilter_alerts_limited_total{}"] == 2
    assert seen["alertfilter_limit_trips_total" + acc] == 1
    assert seen["alertfilter_limited" + acc] == 1
    assert seen["alertfilter_limited" + json.dumps({"limit": MAX_MATCH_RATE})] == 0
    assert seen["alertfilter_limit_tripped_timestamp_seconds" + acc] == int(NOON)
    assert r.status.document(clock.t)["values"]["limits"][MAX_ACCEPTED_PER_DAY] == {
        "value": 1,
        "limited": True,
        "trippedAt": int(NOON),
    }
    clock.t += 86_400
    seen = scrape(r.metrics)
    assert seen["alertfilter_limited" + acc] == 0 and seen["alertfilter_limit_tripped_timestamp_seconds" + acc] == 0


def test_no_limits_no_metadata_change_and_no_status():
    r = make(Clock(), Limits())
    r.process_batch([Msg(i, container(i)) for i in range(4)])
    assert r.consumer.commits[-1][0].metadata in (None, "")
    assert "limits" not in r.status.document(NOON)["values"]


def test_on_the_lean_stream_the_bytes_counted_are_the_originals_forwarded():
    from .test_runner_lean import FakeFetch, lean_msg, original

    log = {k: original(k, k) for k in range(6)}
    two = sum(len(log[k].value() or b"") for k in (0, 1))
    settings = RunnerSettings("fake:9092", "lean", "out", "out.deadletter", "g", full_topic="full")
    clients = KafkaClients(FakeConsumer({}), FakeProducer({"message.max.bytes": settings.max_message_bytes}))
    guard = LimitGuard(Limits(max_bytes_per_day=two), Clock())
    r = Runner(
        settings, clients, InlineFilters("def f(a):\n    return True\n"), VisitCap(None), "f", "0" * 64, limits=guard
    )
    assert r.originals is not None
    r.originals.consumer = FakeFetch(log)
    r.on_assign(r.consumer, [TopicPartition("lean", 0)])
    r.process_batch([lean_msg(k, k) for k in range(6)])  # lean messages are small; their originals are not
    assert forwarded(r) == [log[0].value(), log[1].value()]
    assert r.totals["limited"] == 4 and guard.limited_now(MAX_BYTES_PER_DAY)
    assert guard.snapshot()["bytes"] == two and guard.snapshot()["accepted"] == 2  # type: ignore[index]
