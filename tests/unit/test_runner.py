"""The runner's batch logic against fake Kafka clients (injected: the tests drive the public API):
commit failures, dead letters too large, SIGTERM between messages, the cap's counts restored from
the committed offsets, liveness per message."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from alertfilter import load_filter
from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.codecs import Decoder
from alertfilter.offsets import decode_commit_metadata, encode_commit_metadata
from alertfilter.outcome import Outcome
from alertfilter.processor import AlertProcessor
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings
from alertfilter.sink import H_REASON, H_SRC_OFFSET, H_VALUE_OMITTED

from .kafka_fakes import Delivered, FakeConsumer, FakeProducer, Msg, container


class InlineFilters:
    """The filter process's part, in this process (the filter process itself: test_filter_process.py)."""

    def __init__(self, src: str) -> None:
        self.processor = AlertProcessor(load_filter(src), Decoder("container"), VisitCap(None), filter_timeout_s=0)

    def verdicts(
        self, values: Sequence[bytes | None], stop: threading.Event | None = None
    ) -> Generator[Outcome, None, None]:
        for v in values:
            if stop is not None and stop.is_set():
                return
            yield self.processor.process(v)

    def close(self) -> None:
        pass


@pytest.fixture
def make_runner(monkeypatch):
    monkeypatch.setattr(FakeProducer, "topic_limits", {})

    def make(src: str = "def f(a):\n    return True\n", cap: int | None = None, **cfg: Any) -> Runner:
        settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g", **cfg)
        clients = KafkaClients(FakeConsumer({}), FakeProducer({"message.max.bytes": settings.max_message_bytes}))
        r = Runner(settings, clients, InlineFilters(src), VisitCap(cap), "f", "0" * 64)
        r.on_assign(r.consumer, [TopicPartition("in", 0)])
        return r

    return make


def dead_letters(r: Runner) -> list[Delivered]:
    return [d for d in r.producer.delivered if d.topic() == "out.deadletter"]


# --- A8: a commit that fails for a reason that is not fatal does not stop the runner -----------------
def test_commit_failure_during_a_rebalance_is_logged_and_the_batch_processed_again(make_runner, caplog):
    r = make_runner(cap=2)
    r.consumer.commit_errors = [KafkaError(KafkaError.UNKNOWN_MEMBER_ID)]
    batch = [Msg(5 + i, container(i, visit=9)) for i in range(3)]
    with caplog.at_level(logging.WARNING, "alertfilter.runner"):
        r.process_batch(batch)  # no exception: the runner goes on
    assert "could not commit offsets" in caplog.text and "processed again" in caplog.text
    assert r.consumer.seeks == [("in", 0, 5)]  # re-read from the batch's start
    assert r.cap.count(9) == 0  # and its alerts are counted again, not twice
    r.process_batch(batch)
    assert r.consumer.commits[-1][0].offset == 8 and r.cap.count(9) == 2


def test_fatal_commit_error_stops_the_runner(make_runner):
    r = make_runner()
    r.consumer.commit_errors = [KafkaError(KafkaError._FENCED, fatal=True)]
    with pytest.raises(KafkaException):
        r.process_batch([Msg(0, container(1))])


def test_offset_metadata_too_large_is_committed_without_it(make_runner, caplog):
    r = make_runner(cap=5)
    r.consumer.commit_errors = [KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)]
    r.process_batch([Msg(0, container(1))])
    assert r.consumer.commits[0][0].metadata is not None and r.consumer.commits[1][0].metadata is None
    assert r.consumer.commits[1][0].offset == 1


# --- A1: dead letters too large never stop the runner -------------------------------------------------
def test_dead_letter_over_the_producer_limit_goes_without_its_value(make_runner):
    r = make_runner(max_message_bytes=200_000)
    big = b"\x00garbage" + b"x" * 180_000  # under the limit, but not 64 KiB under it
    huge = b"\x00garbage" + b"x" * 5_000_000
    r.process_batch([Msg(0, container(1)), Msg(1, big), Msg(2, huge), Msg(3, container(2))])
    dl = dead_letters(r)
    assert [d.headers[H_SRC_OFFSET] for d in dl] == [b"1", b"2"]
    assert all(
        d.value is None and d.headers[H_VALUE_OMITTED] == b"true" and d.headers[H_REASON] == b"decode-error" for d in dl
    )
    assert [d.topic() for d in r.producer.delivered].count("out") == 2
    assert r.consumer.commits[-1][0].offset == 4
    assert r.totals["dead_letters"] == 2


def test_dead_letter_the_producer_refuses_at_once_is_sent_again_without_its_value(make_runner, monkeypatch):
    r = make_runner(max_message_bytes=200_000)
    monkeypatch.setattr(r.sink, "dead_letter_limit", 10**9)  # as if the size check missed it
    r.process_batch([Msg(0, b"\x00" + b"x" * 300_000)])
    (dl,) = dead_letters(r)
    assert dl.value is None and dl.headers[H_VALUE_OMITTED] == b"true"


def test_dead_letter_the_broker_refuses_is_sent_again_without_its_value(make_runner, caplog):
    r = make_runner()
    FakeProducer.topic_limits = {"out.deadletter": 100_000}  # the topic's max.message.bytes
    with caplog.at_level(logging.WARNING, "alertfilter.runner"):
        r.process_batch([Msg(0, b"\x00" + b"x" * 300_000), Msg(1, container(1))])
    (dl,) = dead_letters(r)
    assert dl.value is None and dl.headers[H_VALUE_OMITTED] == b"true" and dl.headers[H_SRC_OFFSET] == b"0"
    assert "refused a record from in[0]@0 as too large" in caplog.text
    assert r.consumer.commits[-1][0].offset == 2


def test_dead_letter_with_huge_headers_goes_without_them(make_runner):
    r = make_runner(max_message_bytes=200_000)
    r.process_batch([Msg(0, b"\x00garbage", headers=[("big", b"h" * 300_000)], key=b"k")])
    (dl,) = dead_letters(r)
    assert "big" not in dl.headers and dl.headers["alertfilter.error.headers-omitted"] == b"true"
    assert dl.headers[H_REASON] == b"decode-error"


# --- A9: a stop request is honoured between messages ----------------------------------------------------
def test_stop_between_messages_commits_only_the_processed_ones(make_runner):
    r = make_runner()
    real = r.filters.processor.process

    def process(value: bytes | None) -> Any:
        r.stop()  # SIGTERM arrives while the first message is processed
        return real(value)

    r.filters.processor.process = process
    r.process_batch([Msg(i, container(i)) for i in range(5)])
    assert len(r.consumer.commits) == 1 and r.consumer.commits[0][0].offset == 1
    assert r.totals["consumed"] == 1


# --- A7: liveness beats per message ----------------------------------------------------------------------
def test_a_slow_batch_keeps_the_runner_alive(make_runner):
    r = make_runner("import time\ndef f(a):\n    time.sleep(0.3)\n    return True\n", liveness_window_s=0.5)
    t0 = time.monotonic()
    r.process_batch([Msg(i, container(i)) for i in range(4)])  # 1.2 s: longer than the window
    assert r.heartbeat.last >= t0 + 0.85  # beaten at the last message, not only at the batch's start


# --- the cap's counts travel with the committed offsets -------------------------------------------------
def test_commit_metadata_round_trip():
    assert encode_commit_metadata("[[1,2]]") == "[[1,2]]"
    assert encode_commit_metadata(None) is None
    assert decode_commit_metadata('[["a,b",1]]') == [["a,b", 1]]
    assert decode_commit_metadata('{"cap":[[9,2]],"skip":[11]}') == [[9, 2]]  # an earlier runner's form
    for junk in (None, "", "1:2,3:4", "{", '{"skip": "x"}', "42"):
        assert decode_commit_metadata(junk) is None


def test_cap_counts_are_restored_from_the_committed_offsets(make_runner):
    r = make_runner(cap=3)
    r.consumer.committed_meta = {0: "[[9,2]]"}
    r.on_assign(r.consumer, [TopicPartition("in", 0)])
    assert r.cap.count(9) == 2
    r.process_batch([Msg(10 + i, container(10 + i, visit=9)) for i in range(3)])
    assert r.totals["accepted"] == 1 and r.totals["capped"] == 2
    assert r.consumer.commits[-1][0].offset == 13 and decode_commit_metadata(r.consumer.commits[-1][0].metadata) == [
        [9, 3]
    ]


def test_a_replica_given_no_partition_is_ready_as_a_standby(make_runner):
    # replicas: 3 on a one-partition input: two members get an empty assignment; they are healthy
    # standbys (and run their cap stages), so the Deployment and the filter's Ready can be True
    settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g")
    clients = KafkaClients(FakeConsumer({}), FakeProducer({"message.max.bytes": settings.max_message_bytes}))
    r = Runner(settings, clients, InlineFilters("def f(a):\n    return True\n"), VisitCap(None), "f", "0" * 64)
    assert not r.ready()  # not in the group yet
    r.on_assign(r.consumer, [])
    assert r.ready()
    busy = make_runner()
    busy.on_revoke(busy.consumer, [TopicPartition("in", 0)])
    assert busy.ready()  # a rebalance moves partitions; the member stays in the group
