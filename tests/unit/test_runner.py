"""The runner's batch logic against fake Kafka clients: commit failures, dead letters too large,
SIGTERM between messages, alerts passed over after a watchdog take-over, liveness per message."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
from typing import Any

import fastavro
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import alertfilter.runner as runner_mod
from alertfilter import load_filter
from alertfilter.cap import VisitCap
from alertfilter.codecs import Decoder
from alertfilter.processor import AlertProcessor
from alertfilter.runner import (H_ALERT_ID, H_REASON, H_SRC_OFFSET, H_VALUE_OMITTED, Runner, RunnerConfig,
                                decode_commit_metadata, encode_commit_metadata)

SCHEMA = fastavro.parse_schema({"type": "record", "name": "A", "fields": [
    {"name": "diaSourceId", "type": "long"}, {"name": "pad", "type": "bytes"},
    {"name": "diaSource", "type": {"type": "record", "name": "S", "fields": [{"name": "visit", "type": "long"}]}}]})


def container(i: int, visit: int = 1, pad: int = 0) -> bytes:
    bio = io.BytesIO()
    fastavro.writer(bio, SCHEMA, [{"diaSourceId": i, "pad": b"x" * pad, "diaSource": {"visit": visit}}])
    return bio.getvalue()


class Msg:
    def __init__(self, offset: int, value: bytes | None, partition: int = 0, topic: str = "in",
                 headers: list[tuple[str, bytes]] | None = None, key: bytes | None = None) -> None:
        self._o, self._v, self._p, self._t, self._h, self._k = offset, value, partition, topic, headers, key

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._h

    def error(self) -> None:
        return None


class FakeConsumer:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.commits: list[list[TopicPartition]] = []
        self.commit_errors: list[KafkaError] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.committed_meta: dict[int, str] = {}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> list[TopicPartition]:
        self.commits.append(offsets)
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))
        return offsets

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, 10, self.committed_meta.get(p.partition)) for p in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def consumer_group_metadata(self) -> bytes:
        return b"cgmd"

    def close(self) -> None:
        pass


class Delivered:
    def __init__(self, topic: str, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
        self._topic, self.value, self.headers = topic, value, dict(headers)

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Refuses records over ``message.max.bytes`` at once, and (like a broker) records over
    ``topic_limits[topic]`` when flushed."""

    topic_limits: dict[str, int] = {}

    def __init__(self, conf: dict[str, Any]) -> None:
        self.limit = conf["message.max.bytes"]
        self.queue: list[tuple[Delivered, Any]] = []
        self.delivered: list[Delivered] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: list[tuple[str, bytes | None]] | None = None, on_delivery: Any = None) -> None:
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in headers or [])
        if size > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.queue.append((Delivered(topic, value, headers or []), on_delivery))

    def flush(self, timeout: float = 0) -> int:
        queue, self.queue = self.queue, []
        for rec, cb in queue:
            size = len(rec.value or b"") + sum(len(k) + len(v or b"") for k, v in rec.headers.items())
            if size > self.topic_limits.get(rec.topic(), 1 << 40):
                cb(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), rec)
            else:
                self.delivered.append(rec)
                cb(None, rec)
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


@pytest.fixture
def make_runner(monkeypatch):
    monkeypatch.setattr(runner_mod, "Consumer", FakeConsumer)
    monkeypatch.setattr(runner_mod, "Producer", FakeProducer)
    monkeypatch.setattr(FakeProducer, "topic_limits", {})

    def make(src: str = "def f(a):\n    return True\n", cap: int | None = None, **cfg: Any) -> Runner:
        proc = AlertProcessor(load_filter(src), Decoder("container"), VisitCap(cap), filter_timeout_s=0)
        r = Runner(RunnerConfig("fake:9092", "in", "out", "out.deadletter", "g", **cfg), proc)
        r._assigned = {("in", 0)}
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
        r._process_batch(batch)  # no exception: the runner goes on
    assert "could not commit offsets" in caplog.text and "processed again" in caplog.text
    assert r.consumer.seeks == [("in", 0, 5)]  # re-read from the batch's start
    assert r.processor.cap.count(9) == 0  # and its alerts are counted again, not twice
    r._process_batch(batch)
    assert r.consumer.commits[-1][0].offset == 8 and r.processor.cap.count(9) == 2


def test_fatal_commit_error_stops_the_runner(make_runner):
    r = make_runner()
    r.consumer.commit_errors = [KafkaError(KafkaError._FENCED, fatal=True)]
    with pytest.raises(KafkaException):
        r._process_batch([Msg(0, container(1))])


def test_offset_metadata_too_large_is_committed_without_it(make_runner, caplog):
    r = make_runner(cap=5)
    r.consumer.commit_errors = [KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)]
    r._process_batch([Msg(0, container(1))])
    assert r.consumer.commits[0][0].metadata is not None and r.consumer.commits[1][0].metadata is None
    assert r.consumer.commits[1][0].offset == 1


# --- A1: dead letters too large never stop the runner -------------------------------------------------
def test_dead_letter_over_the_producer_limit_goes_without_its_value(make_runner):
    r = make_runner(max_message_bytes=200_000)
    big = b"\x00garbage" + b"x" * 180_000  # under the limit, but not 64 KiB under it
    huge = b"\x00garbage" + b"x" * 5_000_000
    r._process_batch([Msg(0, container(1)), Msg(1, big), Msg(2, huge), Msg(3, container(2))])
    dl = dead_letters(r)
    assert [d.headers[H_SRC_OFFSET] for d in dl] == [b"1", b"2"]
    assert all(d.value is None and d.headers[H_VALUE_OMITTED] == b"true" and d.headers[H_REASON] == b"decode-error"
               for d in dl)
    assert [d.topic() for d in r.producer.delivered].count("out") == 2
    assert r.consumer.commits[-1][0].offset == 4
    assert r.totals["dead_letters"] == 2


def test_dead_letter_the_producer_refuses_at_once_is_sent_again_without_its_value(make_runner, monkeypatch):
    r = make_runner(max_message_bytes=200_000)
    monkeypatch.setattr(r, "_dead_letter_limit", 10**9)  # as if the size check missed it
    r._process_batch([Msg(0, b"\x00" + b"x" * 300_000)])
    (dl,) = dead_letters(r)
    assert dl.value is None and dl.headers[H_VALUE_OMITTED] == b"true"


def test_dead_letter_the_broker_refuses_is_sent_again_without_its_value(make_runner, caplog):
    r = make_runner()
    FakeProducer.topic_limits = {"out.deadletter": 100_000}  # the topic's max.message.bytes
    with caplog.at_level(logging.WARNING, "alertfilter.runner"):
        r._process_batch([Msg(0, b"\x00" + b"x" * 300_000), Msg(1, container(1))])
    (dl,) = dead_letters(r)
    assert dl.value is None and dl.headers[H_VALUE_OMITTED] == b"true" and dl.headers[H_SRC_OFFSET] == b"0"
    assert "refused a record from in[0]@0 as too large" in caplog.text
    assert r.consumer.commits[-1][0].offset == 2


def test_dead_letter_with_huge_headers_goes_without_them(make_runner):
    r = make_runner(max_message_bytes=200_000)
    r._process_batch([Msg(0, b"\x00garbage", headers=[("big", b"h" * 300_000)], key=b"k")])
    (dl,) = dead_letters(r)
    assert "big" not in dl.headers and dl.headers["alertfilter.error.headers-omitted"] == b"true"
    assert dl.headers[H_REASON] == b"decode-error"


# --- A9: a stop request is honoured between messages ----------------------------------------------------
def test_stop_between_messages_commits_only_the_processed_ones(make_runner):
    r = make_runner()
    real = r.processor.process

    def process(value: bytes | None) -> Any:
        r.stop()  # SIGTERM arrives while the first message is processed
        return real(value)

    r.processor.process = process  # type: ignore[method-assign]
    r._process_batch([Msg(i, container(i)) for i in range(5)])
    assert len(r.consumer.commits) == 1 and r.consumer.commits[0][0].offset == 1
    assert r.totals["consumed"] == 1


# --- A7: liveness beats per message ----------------------------------------------------------------------
def test_a_slow_batch_keeps_the_runner_alive(make_runner):
    r = make_runner("import time\ndef f(a):\n    time.sleep(0.3)\n    return True\n", liveness_window_s=0.5)
    t0 = time.monotonic()
    r._process_batch([Msg(i, container(i)) for i in range(4)])  # 1.2 s: longer than the window
    assert r.heartbeat.last >= t0 + 0.85  # beaten at the last message, not only at the batch's start


# --- A6: the alerts an earlier run's watchdog dead-lettered are passed over -----------------------------
def test_commit_metadata_round_trip():
    assert encode_commit_metadata('[[1,2]]') == '[[1,2]]'
    assert encode_commit_metadata(None) is None
    text = encode_commit_metadata('[["a,b",1]]', [12, 11, 12])
    assert text == '{"cap":[["a,b",1]],"skip":[11,12]}'
    assert decode_commit_metadata(text) == ([["a,b", 1]], [11, 12])
    assert decode_commit_metadata('[[1,2]]') == ([[1, 2]], [])
    for junk in (None, "", "1:2,3:4", "{", '{"skip": "x"}', "42"):
        assert decode_commit_metadata(junk)[1] == []


def test_marked_offset_is_passed_over_without_calling_the_filter(make_runner, caplog):
    r = make_runner("def f(a):\n    return sum(range(10**12)) > 0 if a['diaSourceId'] == 11 else True\n", cap=5)
    r.consumer.committed_meta = {0: '{"cap":[[9,2]],"skip":[11]}'}
    r._on_assign(r.consumer, [TopicPartition("in", 0)])
    assert r.processor.cap.count(9) == 2
    with caplog.at_level(logging.WARNING, "alertfilter.runner"):
        r._process_batch([Msg(10, container(10, visit=9)), Msg(11, container(11, visit=9))])
    assert "passing over in[0]@11 without calling the filter" in caplog.text
    assert r.totals["errors"] == 1 and dead_letters(r) == []  # the earlier run wrote its dead letter
    assert r.consumer.commits[-1][0].offset == 12 and "skip" not in r.consumer.commits[-1][0].metadata
    assert r.processor.cap.count(9) == 3


def test_mark_is_kept_until_the_offset_is_passed(make_runner):
    r = make_runner(cap=5)
    r.consumer.committed_meta = {0: '{"cap":[],"skip":[13]}'}
    r._on_assign(r.consumer, [TopicPartition("in", 0)])
    r._process_batch([Msg(10, container(10))])
    assert decode_commit_metadata(r.consumer.commits[-1][0].metadata)[1] == [13]


# --- A6: the native deadline ends a process blocked in a C call ------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX timers with SIGEV_THREAD are Linux's")
def test_native_deadline_ends_a_process_blocked_in_a_c_call():
    code = ("from alertfilter.watchdog import NativeDeadline\n"
            "d = NativeDeadline(70)\nassert d.available\nd.arm(0.5)\nsum(range(10**12))\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == 70 and time.monotonic() - t0 < 20


def test_shared_state_round_trip():
    from alertfilter import watchdog as wd

    st = wd.SharedState()
    other = wd.SharedState(st.fd)  # as the watchdog process maps it
    st.begin(7, 123.5, 2, 1000, 990)
    st.set_alert_id(169813007083241532)
    st.set_tick(124.0)
    st.set_cgmd(b"CGMDv2:\xff")
    snap = other.snapshot()
    assert (snap.state, snap.seq, snap.t0, snap.partition, snap.offset, snap.batch_start, snap.tick) == \
        (wd.BUSY, 7, 123.5, 2, 1000, 990, 124.0)
    assert snap.alert_id == "169813007083241532" and snap.cgmd == b"CGMDv2:\xff"
    other.state = wd.HELPER
    assert st.state == wd.HELPER
    other.close()
    st.close()
