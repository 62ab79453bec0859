"""The loop overlaps filtering with sending: the next batch goes to the filter process before the
previous one is settled, and the delivery rules still hold (a batch's offsets are committed only
once every record of it is acknowledged, in order; a failed commit reads that batch and the next
again; SIGTERM commits what was processed; a rebalance settles the pending batch first).

The Kafka clients are fakes (kafka_fakes.py); the filter runs in this process (InlineFilters)."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence

import pytest
from confluent_kafka import KafkaError, TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.outcome import Outcome
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings

from .kafka_fakes import FakeConsumer, FakeProducer, Msg, container
from .test_runner import InlineFilters

EVEN = "def f(alert):\n    return alert['diaSourceId'] % 2 == 0\n"


class ScriptedConsumer(FakeConsumer):
    """Returns the given batches from ``consume``, then asks the runner to stop; notes each event."""

    def __init__(self, batches: list[list[Msg]], events: list[str]) -> None:
        super().__init__({})
        self.batches, self.events = batches, events
        self.runner: Runner | None = None
        self.acked_at_commit: list[int] = []

    def consume(self, n: int, timeout: float) -> list[Msg]:
        if not self.batches:
            assert self.runner is not None
            self.runner.stop()
            return []
        return self.batches.pop(0)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> list[TopicPartition]:
        assert self.runner is not None
        self.events.append(f"commit {offsets[0].offset}")
        self.acked_at_commit.append(len(self.runner.producer.delivered))
        return super().commit(offsets, asynchronous)


class NotedFilters(InlineFilters):
    def __init__(self, src: str, events: list[str]) -> None:
        super().__init__(src)
        self.events = events

    def verdicts(
        self, values: Sequence[bytes | None], stop: threading.Event | None = None
    ) -> Generator[Outcome, None, None]:
        self.events.append(f"filter {len(values)}")
        return super().verdicts(values, stop)


@pytest.fixture
def loop_runner(monkeypatch):
    monkeypatch.setattr(FakeProducer, "topic_limits", {})

    def make(batches: list[list[Msg]]) -> tuple[Runner, list[str]]:
        events: list[str] = []
        settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g")
        consumer = ScriptedConsumer(batches, events)
        clients = KafkaClients(consumer, FakeProducer({"message.max.bytes": settings.max_message_bytes}))
        r = Runner(settings, clients, NotedFilters(EVEN, events), VisitCap(None), "f", "0" * 64)
        consumer.runner = r
        r.on_assign(consumer, [TopicPartition("in", 0)])
        return r, events

    return make


def batches(*sizes: int) -> list[list[Msg]]:
    out, offset = [], 0
    for size in sizes:
        out.append([Msg(offset + i, container(offset + i)) for i in range(size)])
        offset += size
    return out


def test_the_next_batch_is_filtered_before_the_previous_one_is_committed(loop_runner):
    bs = batches(4, 4, 2)
    msgs = [m for b in bs for m in b]
    r, events = loop_runner(bs)
    r._loop()
    assert events == ["filter 4", "filter 4", "commit 4", "filter 2", "commit 8", "commit 10"]
    assert [d.value for d in r.producer.delivered] == [m.value() for m in msgs if m.offset() % 2 == 0]
    # each commit came after every output of the committed messages was acknowledged
    assert r.consumer.acked_at_commit == [2, 4, 5]
    assert r.totals == {
        "consumed": 10,
        "accepted": 5,
        "rejected": 5,
        "capped": 0,
        "limited": 0,
        "errors": 0,
        "dead_letters": 0,
    }


def test_a_failed_commit_reads_that_batch_and_the_next_again(loop_runner):
    bs = batches(4, 4)
    first = bs[0]
    r, events = loop_runner(bs)
    r.consumer.commit_errors = [KafkaError(KafkaError.UNKNOWN_MEMBER_ID)]
    r._loop()
    # the first batch's commit failed: it is read again from offset 0; the second was not produced
    assert r.consumer.seeks == [("in", 0, 0)]
    assert [d.value for d in r.producer.delivered] == [first[0].value(), first[2].value()]
    assert events[-1] == "commit 4"  # nothing of the second batch was committed


def test_a_failed_commit_also_rewinds_a_partition_only_the_next_batch_read(loop_runner):
    first = [Msg(i, container(i), partition=0) for i in range(2)]
    second = [Msg(7, container(7), partition=1)]
    r, _ = loop_runner([first, second])
    r.on_assign(r.consumer, [TopicPartition("in", 1)])
    r.consumer.commit_errors = [KafkaError(KafkaError.UNKNOWN_MEMBER_ID)]
    r._loop()
    assert sorted(r.consumer.seeks) == [("in", 0, 0), ("in", 1, 7)]
    assert [c[0].offset for c in r.consumer.commits] == [2]  # the failed one; nothing after it


def test_sigterm_commits_the_batch_being_sent(loop_runner):
    r, events = loop_runner(batches(3))
    r.consumer.batches.append([])  # the stop comes while the runner waits for more
    r._loop()
    assert events == ["filter 3", "commit 3"]


def test_a_rebalance_settles_the_pending_batch_before_the_partitions_go(loop_runner):
    r, events = loop_runner(batches(4))
    consumer: ScriptedConsumer = r.consumer
    consume = consumer.consume

    def consume_then_revoke(n: int, timeout: float) -> list[Msg]:
        if not consumer.batches and "revoked" not in events:
            r.on_revoke(consumer, [TopicPartition("in", 0)])
            events.append("revoked")
            return []
        return consume(n, timeout)

    consumer.consume = consume_then_revoke  # type: ignore[method-assign]
    r._loop()
    assert events == ["filter 4", "commit 4", "revoked"]
    assert consumer.acked_at_commit == [2]
