"""A runner on a pool's lean stream (``--full-topic``), against fake Kafka clients: an accepted,
admitted lean alert is forwarded as its original (value, key, headers), fetched by partition and
offset at the batch's end; only those are fetched; a gone original and a filter error are dead
letters naming the original's place."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.lean import H_LEAN_OFFSET, H_LEAN_PARTITION, H_LEAN_TOPIC
from alertfilter.originals import lean_source
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings
from alertfilter.sink import H_REASON, H_SRC_OFFSET, H_SRC_TOPIC

from .kafka_fakes import FakeConsumer, FakeProducer, Msg, container
from .test_runner import InlineFilters


class Err:
    def __init__(self, partition: int, code: int) -> None:
        self._p, self._e = partition, KafkaError(code)

    def partition(self) -> int:
        return self._p

    def error(self) -> KafkaError:
        return self._e


class FakeFetch:
    """The full stream: ``log`` {offset: message} of partition 0 from offset ``low``; records every
    offset it hands out (what was read) and every seek."""

    def __init__(self, log: dict[int, Msg], low: int = 0) -> None:
        self.log, self.low, self.high = log, low, max(log) + 1 if log else 0
        self.pos: dict[int, int] = {}
        self.read: list[int] = []
        self.seeks: list[int] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.pos = {tp.partition: tp.offset for tp in tps}

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp.offset)
        self.pos[tp.partition] = tp.offset

    def unassign(self) -> None:
        self.pos = {}

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0, cached: bool = False) -> tuple[int, int]:
        return self.low, self.high

    def consume(self, n: int, timeout: float = 0) -> list[Any]:
        out: list[Any] = []
        for p, o in list(self.pos.items()):
            if o < self.low:
                return [Err(p, KafkaError._AUTO_OFFSET_RESET)]
            if o >= self.high:
                return [Err(p, KafkaError._PARTITION_EOF)]
            while o < self.high and len(out) < 3:  # a few at a time, as fetches come
                if o in self.log:
                    out.append(self.log[o])
                    self.read.append(o)
                o += 1
            self.pos[p] = o
        return out

    def close(self) -> None:
        pass


def lean_msg(offset: int, i: int, visit: int = 1, source: int | None = None) -> Msg:
    src = offset if source is None else source
    headers = [(H_LEAN_TOPIC, b"full"), (H_LEAN_PARTITION, b"0"), (H_LEAN_OFFSET, str(src).encode())]
    return Msg(offset, container(i, visit), topic="lean", headers=headers, key=f"k{i}".encode())  # the original's key


def original(offset: int, i: int, visit: int = 1) -> Msg:
    return Msg(offset, container(i, visit, pad=5000), topic="full", headers=[("trace", b"t")], key=f"k{i}".encode())


@pytest.fixture
def make_runner(monkeypatch):
    monkeypatch.setattr(FakeProducer, "topic_limits", {})

    def make(src: str, fetch: FakeFetch, cap: int | None = None) -> Runner:
        settings = RunnerSettings("fake:9092", "lean", "out", "out.deadletter", "g", full_topic="full")
        clients = KafkaClients(FakeConsumer({}), FakeProducer({"message.max.bytes": settings.max_message_bytes}))
        r = Runner(settings, clients, InlineFilters(src), VisitCap(cap), "f", "0" * 64)
        assert r.originals is not None
        r.originals.consumer = fetch
        r.on_assign(r.consumer, [TopicPartition("lean", 0)])
        return r

    return make


def test_accepted_lean_alerts_forward_their_originals_and_only_the_admitted_are_fetched(make_runner):
    log = {k: original(k, k, visit=7 if k < 20 else 8) for k in range(40)}
    fetch = FakeFetch(log)
    r = make_runner("def f(a):\n    return a['diaSourceId'] % 2 == 0\n", fetch, cap=3)
    r.process_batch([lean_msg(k, k, visit=7 if k < 20 else 8) for k in range(40)])
    out = [d for d in r.producer.delivered if d.topic() == "out"]
    # the first 3 even ids of each visit: their originals, whole, with the original headers
    assert [d.value for d in out] == [log[k].value() for k in (0, 2, 4, 20, 22, 24)]
    assert all(d.headers["trace"] == b"t" and d.headers["alertfilter.visit"] in (b"7", b"8") for d in out)
    assert all(len(d.value or b"") > 5000 for d in out)
    assert set(fetch.read) >= {0, 2, 4, 20, 22, 24} and 10 not in fetch.read  # far apart: sought, not read
    assert 20 in fetch.seeks
    assert r.totals["accepted"] == 6 and r.totals["capped"] == 14
    assert r.consumer.commits[-1][0].offset == 40  # committed once the originals were acknowledged


def test_an_original_that_is_gone_is_a_dead_letter_with_the_reason(make_runner):
    log = {k: original(k, k) for k in range(5, 10)}  # offsets 0-4 are gone (retention)
    r = make_runner("def f(a):\n    return True\n", FakeFetch(log, low=5))
    r.process_batch([lean_msg(k, k) for k in (3, 6)])
    out = [d for d in r.producer.delivered if d.topic() == "out"]
    dls = [d for d in r.producer.delivered if d.topic() == "out.deadletter"]
    assert [d.value for d in out] == [log[6].value()]
    assert len(dls) == 1 and dls[0].headers[H_REASON] == b"original-missing"
    assert (dls[0].headers[H_SRC_TOPIC], dls[0].headers[H_SRC_OFFSET]) == (b"full", b"3")
    assert r.totals["errors"] == 1


def test_a_filter_error_on_a_lean_alert_is_dead_lettered_at_the_originals_place(make_runner):
    fetch = FakeFetch({0: original(0, 0)})
    r = make_runner("def f(a):\n    raise ValueError('no')\n", fetch)
    r.process_batch([lean_msg(41, 0, source=0)])
    (dl,) = [d for d in r.producer.delivered if d.topic() == "out.deadletter"]
    assert dl.headers[H_REASON] == b"filter-exception" and dl.headers[H_SRC_TOPIC] == b"full"
    assert dl.headers[H_SRC_OFFSET] == b"0" and fetch.read == []  # nothing accepted: nothing fetched


def test_a_lean_message_without_its_source_or_from_another_topic_names_no_original(make_runner):
    r = make_runner("def f(a):\n    return True\n", FakeFetch({}))
    forged = Msg(1, container(1), topic="lean", headers=[(H_LEAN_TOPIC, b"secret"), (H_LEAN_PARTITION, b"0"),
                                                        (H_LEAN_OFFSET, b"0")])  # fmt: skip
    r.process_batch([Msg(0, container(0), topic="lean"), forged])
    dls = [d for d in r.producer.delivered if d.topic() == "out.deadletter"]
    assert [d.headers[H_REASON] for d in dls] == [b"original-missing"] * 2
    assert b"names no original" in dls[0].headers["alertfilter.error.message"]
    assert b"not in the full stream" in dls[1].headers["alertfilter.error.message"]
    assert lean_source(forged) == ("secret", 0, 0)


def test_a_lean_message_naming_another_alert_s_original_forwards_nothing(make_runner):
    # its headers name offset 1, the original of alert 1 (another key): alert 0's acceptance must
    # not forward alert 1
    log = {k: original(k, k) for k in range(3)}
    r = make_runner("def f(a):\n    return True\n", FakeFetch(log))
    r.process_batch([lean_msg(0, 0, source=1), lean_msg(2, 2)])
    out = [d for d in r.producer.delivered if d.topic() == "out"]
    (dl,) = [d for d in r.producer.delivered if d.topic() == "out.deadletter"]
    assert [d.value for d in out] == [log[2].value()]
    assert dl.headers[H_REASON] == b"original-missing" and dl.headers[H_SRC_OFFSET] == b"1"
    assert b"is not its original" in dl.headers["alertfilter.error.message"]
