"""Batches in flight: the loop sends the next batch before the previous one's records are
acknowledged, and commits each partition's offset only up to its first unacknowledged output, with
the cap's counts as they were after the committed messages; SIGTERM and dead letters keep their
guarantees while several batches are in flight.

The broker is a fake whose acknowledgements the test holds back (``HeldProducer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.offsets import decode_commit_metadata
from alertfilter.runner import MAX_BATCHES_IN_FLIGHT, Runner
from alertfilter.settings import RunnerSettings
from alertfilter.sink import H_SRC_OFFSET, H_VALUE_OMITTED

from .kafka_fakes import Delivered, FakeConsumer, FakeProducer, Msg, container
from .test_runner import InlineFilters


class HeldProducer(FakeProducer):
    """Acknowledges a record on a non-blocking ``flush(0)`` only when ``ready(record)``; a blocking
    flush acknowledges everything (as a broker that catches up)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.ready: Callable[[Delivered], bool] = lambda rec: True
        self.max_queued = 0

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        on_delivery: Any = None,
    ) -> None:
        super().produce(topic, value, key, headers, on_delivery)
        self.max_queued = max(self.max_queued, len(self.queue))

    def flush(self, timeout: float = 0) -> int:
        if timeout > 0:
            return super().flush(timeout)
        held = [(rec, cb) for rec, cb in self.queue if not self.ready(rec)]
        self.queue = [(rec, cb) for rec, cb in self.queue if self.ready(rec)]
        super().flush(0)
        self.queue = held
        return len(held)


class Consumer(FakeConsumer):
    """Gives the batches, then stops the runner; notes each commit with what was acknowledged then."""

    def __init__(self, batches: list[list[Msg]]) -> None:
        super().__init__({})
        self.batches = batches
        self.runner: Runner | None = None
        self.source = {m.value(): (m.partition(), m.offset()) for b in batches for m in b}
        self.log: list[tuple[list[tuple[int, int]], set[tuple[int, int]]]] = []

    def consume(self, n: int, timeout: float) -> list[Msg]:
        assert self.runner is not None
        if not self.batches:
            self.runner.stop()
            return []
        return self.batches.pop(0)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> list[TopicPartition]:
        assert self.runner is not None
        acked = {origin(self.runner, d) for d in self.runner.producer.delivered}
        self.log.append(([(tp.partition, tp.offset) for tp in offsets], acked))
        return super().commit(offsets, asynchronous)


def origin(r: Runner, rec: Delivered) -> tuple[int, int]:
    """``(partition, offset)`` of the input an output record came from (dead letters: their header)."""
    consumer: Consumer = r.consumer
    if rec.value in consumer.source:
        return consumer.source[rec.value]
    return (0, int(rec.headers[H_SRC_OFFSET] or b"-1"))


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setattr(FakeProducer, "topic_limits", {})

    def make(batches: list[list[Msg]], cap: int | None = None, src: str = "def f(a):\n    return True\n") -> Runner:
        settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g")
        consumer = Consumer(batches)
        r = Runner(
            settings,
            KafkaClients(consumer, HeldProducer({"message.max.bytes": settings.max_message_bytes})),
            InlineFilters(src),
            VisitCap(cap),
            "f",
            "0" * 64,
        )
        consumer.runner = r
        r.on_assign(consumer, [TopicPartition("in", 0), TopicPartition("in", 1)])
        return r

    return make


def msgs(offsets: range, partition: int = 0, visit: int = 1) -> list[Msg]:
    return [Msg(o, container(1000 * partition + o, visit=visit), partition=partition) for o in offsets]


def assert_never_past_unacknowledged(consumer: Consumer) -> None:
    """Every committed offset of a partition is at most its first unacknowledged output's source offset."""
    for offsets, acked in consumer.log:
        for partition, offset in offsets:
            missing = [o for p, o in consumer.source.values() if p == partition and o < offset and (p, o) not in acked]
            assert not missing, f"committed {partition}@{offset} before outputs of {missing} were acknowledged"


def test_the_loop_sends_the_next_batches_before_the_first_is_acknowledged(runner):
    r = runner([msgs(range(3)), msgs(range(3, 6)), msgs(range(6, 9))])
    r.producer.ready = lambda rec: False  # the broker acknowledges nothing until the runner waits
    r._loop()
    assert r.producer.max_queued == 9  # all three batches were sent before any acknowledgement
    assert [c[0] for c in r.consumer.log] == [[(0, 9)]]  # then one commit, once all were acknowledged
    assert r.consumer.log[0][1] == {(0, o) for o in range(9)}


def test_a_batch_acknowledged_first_is_not_committed_past_an_earlier_unacknowledged_one(runner):
    r = runner([msgs(range(3)), msgs(range(3, 6)), msgs(range(6, 9)), msgs(range(9, 12))])
    # the second record of the first batch is slow; everything else comes back at once
    r.producer.ready = lambda rec: origin(r, rec) != (0, 1)
    r._loop()
    assert_never_past_unacknowledged(r.consumer)
    assert [c[0] for c in r.consumer.log] == [[(0, 12)]]  # nothing before the slow record was back
    assert len(r.producer.delivered) == 12


def test_each_partition_is_committed_up_to_its_own_first_unacknowledged_output(runner):
    first = msgs(range(2), partition=0) + msgs(range(2), partition=1)
    second = msgs(range(2, 4), partition=0) + msgs(range(2, 4), partition=1)
    r = runner([first, second, msgs(range(4, 6), partition=1), msgs(range(6, 8), partition=1)])
    r.producer.ready = lambda rec: origin(r, rec) not in {(0, 2), (0, 3)}  # partition 0's second batch is slow
    r._loop()
    assert_never_past_unacknowledged(r.consumer)
    commits = [dict(c[0]) for c in r.consumer.log]
    assert commits[0] == {0: 2, 1: 2}  # the first batch, on both partitions
    assert commits[-1] == {0: 4, 1: 8}  # the rest once the slow records were back (the final wait)


def test_sigterm_with_batches_in_flight_commits_what_was_processed_once_acknowledged(runner):
    r = runner([msgs(range(3)), msgs(range(3, 6)), msgs(range(6, 9))])
    r.producer.ready = lambda rec: False
    real = r.filters.processor.process
    seen = []

    def process(value: bytes | None) -> Any:
        seen.append(value)
        if len(seen) == 7:
            r.stop()  # SIGTERM while the third batch is produced, two batches still unacknowledged
        return real(value)

    r.filters.processor.process = process
    r._loop()
    assert [c[0] for c in r.consumer.log] == [[(0, 7)]]  # the messages processed, not the rest
    assert r.consumer.log[0][1] == {(0, o) for o in range(7)}
    assert r.totals["consumed"] == 7 and r.totals["accepted"] == 7


def test_a_dead_letter_the_broker_refuses_in_flight_is_resent_smaller_before_its_batch_is_committed(runner):
    FakeProducer.topic_limits = {"out.deadletter": 100_000}
    garbage = Msg(1, b"\x00" + b"x" * 300_000)
    r = runner([[*msgs(range(1)), garbage, *msgs(range(2, 3))], msgs(range(3, 5))])
    r._loop()
    dls = [d for d in r.producer.delivered if d.topic() == "out.deadletter"]
    assert len(dls) == 1 and dls[0].value is None and dls[0].headers[H_VALUE_OMITTED] == b"true"
    # the refused dead letter held its batch back until the smaller one sent again was acknowledged
    assert [c[0] for c in r.consumer.log] == [[(0, 5)]]
    assert r.consumer.log[0][1] == {(0, o) for o in range(5)}


def test_the_commit_metadata_holds_the_cap_counts_after_the_committed_messages_only(runner):
    r = runner([msgs(range(2), visit=9), msgs(range(2, 5), visit=9)], cap=10)
    r.producer.ready = lambda rec: origin(r, rec)[1] < 2  # the second batch is slow
    r._loop()
    first, last = r.consumer.log[0][0], r.consumer.log[-1][0]
    assert first == [(0, 2)] and decode_commit_metadata(r.consumer.commits[0][0].metadata) == [[9, 2]]
    assert last == [(0, 5)] and decode_commit_metadata(r.consumer.commits[-1][0].metadata) == [[9, 5]]


def test_no_more_than_the_bound_of_batches_is_in_flight(runner):
    n = MAX_BATCHES_IN_FLIGHT + 3
    r = runner([msgs(range(i * 2, i * 2 + 2)) for i in range(n)])
    r.producer.ready = lambda rec: False  # the broker is behind: only a waiting flush brings acks
    r._loop()
    assert r.producer.max_queued <= 2 * MAX_BATCHES_IN_FLIGHT
    assert r.consumer.log[-1][0] == [(0, 2 * n)] and len(r.producer.delivered) == 2 * n


def test_a_commit_refused_at_once_reads_every_batch_in_flight_again(runner):
    r = runner([msgs(range(2)), msgs(range(2, 4)), msgs(range(4, 6))])
    r.producer.ready = lambda rec: origin(r, rec)[1] < 2  # only the first batch is back
    r.consumer.commit_errors = [KafkaError(KafkaError.UNKNOWN_MEMBER_ID)]
    r._loop()
    assert r.consumer.seeks == [("in", 0, 0)]  # from the first batch in flight: the second is read again too
