"""Start positions and replay marks (positions.py) against a small stand-in consumer: which offset a
partition starts at, what is committed at once, what a restart finds, and the options' checks."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.convert import SettingError
from alertfilter.limits import LimitGuard, Limits
from alertfilter.offsets import Offsets, decode_commit_metadata, decode_limits_metadata
from alertfilter.positions import Mark, Positions, read_mark, stamp, start_position, time_ms
from alertfilter.runstatus import RunnerStatus
from alertfilter.settings import RunnerSettings, from_env

T = "2026-01-01T00:00:00Z"


class Broker:
    """One topic's partitions: timestamps by offset, and a group's committed offsets with metadata."""

    def __init__(self, stamps: dict[int, list[int]]) -> None:
        self.stamps = stamps
        self.committed_at: dict[int, tuple[int, str | None]] = {}
        self.commits: list[list[TopicPartition]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        out = []
        for tp in partitions:
            offset, meta = self.committed_at.get(tp.partition, (-1001, None))
            out.append(
                TopicPartition(tp.topic, tp.partition, offset, meta)
                if meta
                else TopicPartition(tp.topic, tp.partition, offset)
            )
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> list[TopicPartition]:
        self.commits.append(offsets)
        for tp in offsets:
            self.committed_at[tp.partition] = (tp.offset, tp.metadata)
        return offsets

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0) -> tuple[int, int]:
        return 0, len(self.stamps[tp.partition])

    def offsets_for_times(self, tps: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        out = []
        for tp in tps:
            at = next((o for o, ms in enumerate(self.stamps[tp.partition]) if ms >= tp.offset), -1)
            out.append(TopicPartition(tp.topic, tp.partition, at))
        return out

    def list_topics(self, topic: str, timeout: float = 0) -> Any:
        md = SimpleNamespace(partitions=dict.fromkeys(self.stamps), error=None)
        return SimpleNamespace(topics={topic: md})


MIN = 60_000
STAMPS = {0: [time_ms(T) + i * MIN for i in range(10)], 1: [time_ms(T) + i * MIN for i in range(4)]}
PARTS = [TopicPartition("alerts", 0), TopicPartition("alerts", 1)]


def assign(broker: Broker, **kw: Any) -> Positions:
    status = RunnerStatus()
    p = Positions(broker, kw.pop("start_from", "earliest"), status=status, **kw)
    p.on_assign(PARTS)
    return p


@pytest.mark.parametrize(
    ("start", "offsets"),
    [
        ("earliest", [0, 0]),
        ("latest", [10, 4]),
        ("2026-01-01T00:03:00Z", [3, 3]),
        ("2026-01-01T00:05:00+00:00", [5, 4]),
        ("2030-01-01T00:00:00Z", [10, 4]),
    ],
)
def test_the_groups_first_run_starts_where_start_from_says_and_commits_it_at_once(
    start: str, offsets: list[int]
) -> None:
    broker = Broker(STAMPS)
    assign(broker, start_from=start)
    assert [(tp.partition, tp.offset, tp.metadata) for tp in broker.commits[0]] == [
        (0, offsets[0], None),
        (1, offsets[1], None),
    ]
    assign(broker, start_from="latest")  # a restart: the committed offsets win, nothing is committed
    assert len(broker.commits) == 1


def test_a_replay_rewinds_each_partition_once_and_its_mark_goes_with_every_commit() -> None:
    broker = Broker(STAMPS)
    broker.committed_at = {0: (9, "[[7,3]]"), 1: (4, None)}
    p = assign(broker, replay_from="2026-01-01T00:02:00Z", replay_id=3)
    assert [(tp.offset, read_mark(tp.metadata)) for tp in broker.commits[0]] == [(2, Mark(3, 2)), (2, Mark(3, 2))]
    assert decode_commit_metadata(broker.committed_at[0][1]) in (None, [])  # the cap's counts are not carried over
    assert p.status.document(0)["partitions"][0] == {"topic": "alerts", "partition": 0, "replay": 3, "replayOffset": 2}
    assert p.status.get("inputPartitions") == 2 and p.status.get("replayRequest") == 3
    # every later commit carries the mark, beside the cap's counts
    offsets = Offsets(broker, None, VisitCap(5), {("alerts", 0), ("alerts", 1)})
    offsets.positions = p
    offsets.commit([], [TopicPartition("alerts", 0, 6, "[[7,1]]"), TopicPartition("alerts", 1, 3)])
    assert read_mark(broker.committed_at[0][1]) == Mark(3, 2) and decode_commit_metadata(broker.committed_at[0][1]) == [
        [7, 1]
    ]
    assert read_mark(broker.committed_at[1][1]) == Mark(3, 2)
    # restarts with the same request, or an earlier one: nothing rewound, the mark kept
    n = len(broker.commits)
    assign(broker, replay_from="2026-01-01T00:02:00Z", replay_id=3)
    q = assign(broker, replay_from="2026-01-01T00:00:00Z", replay_id=2)
    assert len(broker.commits) == n and q.marks[("alerts", 0)] == Mark(3, 2)
    # a later request rewinds again
    assign(broker, replay_from="2026-01-01T00:01:00Z", replay_id=4)
    assert [read_mark(tp.metadata) for tp in broker.commits[-1]] == [Mark(4, 1), Mark(4, 1)]


def test_stamp_keeps_what_the_metadata_holds() -> None:
    assert stamp(None, None) is None and stamp("[[1,2]]", None) == "[[1,2]]"
    assert stamp("[[1,2]]", Mark(5, 9)) == '{"cap":[[1,2]],"replay":[5,9]}'
    assert (
        stamp('{"cap":[],"limits":{"d":1},"replay":[1,1]}', Mark(5, 9)) == '{"cap":[],"limits":{"d":1},"replay":[5,9]}'
    )
    assert read_mark("[[1,2]]") is None and read_mark('{"replay":[true,1]}') is None and read_mark("{bad") is None


@pytest.mark.parametrize(
    "bad",
    [
        "now",
        "2026-02-30T00:00:00Z",
        "2026-01-02 03:04:05Z",
        "2026-01-02T03:04:05",
        "",
        "9999-12-31T23:59:59-01:00",  # past the calendar in UTC
        "0001-01-01T00:00:00+01:00",  # before it
        "1969-12-31T23:59:59.999Z",  # Kafka's timestamp -1 is "latest", not a time
    ],
)
def test_a_start_position_that_is_not_one_is_refused_with_what_is_expected(bad: str) -> None:
    with pytest.raises(SettingError, match="expected latest, earliest or an RFC 3339 time"):
        start_position(bad)
    with pytest.raises(SettingError, match="ALERTFILTER_START_FROM"):
        from_env({"ALERTFILTER_START_FROM": bad or " "})


def test_a_replay_needs_its_time_and_its_request_number() -> None:
    assert from_env({"ALERTFILTER_START_FROM": "Latest", "ALERTFILTER_REPLAY_ID": "2"}) == {
        "start_from": "latest",
        "replay_id": 2,
    }
    with pytest.raises(ValueError, match="go together"):
        RunnerSettings("b:9092", "in", "out", "out.dl", "g", replay_from=T).validate(1.0)
    with pytest.raises(SettingError):
        from_env({"ALERTFILTER_REPLAY_ID": "0"})


def test_a_committed_offset_read_that_fails_once_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import KafkaError, KafkaException

    monkeypatch.setattr("alertfilter.positions.time.sleep", lambda s: None)
    broker = Broker(STAMPS)
    broker.committed_at = {0: (9, None), 1: (4, None)}
    real, calls = broker.committed, []

    def flaky(partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        calls.append(1)
        if len(calls) == 1:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return real(partitions, timeout)

    broker.committed = flaky  # type: ignore[method-assign]
    assign(broker, start_from="latest")
    assert len(calls) == 2 and broker.commits == []  # resumed where the group was: nothing moved


def test_a_replay_keeps_the_limits_state_and_drops_only_the_cap_s_counts() -> None:
    # a tripped maxAcceptedPerDay must not be reset by asking for a replay (spec.replayFrom)
    now = time_ms(T) / 1000 + 3600
    guard = LimitGuard(Limits(max_accepted_per_day=2), clock=lambda: now)
    assert [guard.admit(100) for _ in range(3)] == [True, True, False]
    limits = json.dumps(guard.snapshot(), separators=(",", ":"))
    broker = Broker(STAMPS)
    broker.committed_at = {0: (9, '{"cap":[[7,3]],"limits":' + limits + "}"), 1: (4, "[[7,1]]")}
    assign(broker, replay_from="2026-01-01T00:02:00Z", replay_id=5)
    meta0, meta1 = broker.committed_at[0][1], broker.committed_at[1][1]
    assert read_mark(meta0) == read_mark(meta1) == Mark(5, 2)
    assert decode_limits_metadata(meta0) == json.loads(limits)
    assert decode_commit_metadata(meta0) in (None, []) and decode_commit_metadata(meta1) in (None, [])
    assert decode_limits_metadata(meta1) is None
    restarted = LimitGuard(Limits(max_accepted_per_day=2), clock=lambda: now)
    restarted.restore([decode_limits_metadata(meta0)])
    assert not restarted.admit(100)  # still stopped for the rest of the day
