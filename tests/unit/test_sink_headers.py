"""What the runner's records carry in their headers: its own provenance only (a forged incoming
``alertfilter.*`` header is dropped, never forwarded), and an ``output-too-large`` message that
names the part of the record that is too large."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from alertfilter.cap import VisitCap
from alertfilter.clients import KafkaClients
from alertfilter.runner import Runner
from alertfilter.settings import RunnerSettings
from alertfilter.sink import H_FILTER, H_MESSAGE, H_REASON, H_SHA, H_SRC_OFFSET, H_VISIT

from .kafka_fakes import FakeConsumer, FakeProducer, Msg, container
from .test_runner import InlineFilters

SHA = "a" * 64


class RecordingProducer(FakeProducer):
    """Keeps each produced record's headers as the list given (duplicates and order included)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.raw: list[tuple[str, list[tuple[str, bytes | None]]]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,
        on_delivery: Any = None,
    ) -> None:
        super().produce(topic, value, key, headers, on_delivery)
        self.raw.append((topic, list(headers or [])))


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setattr(FakeProducer, "topic_limits", {})

    def make(src: str = "def f(a):\n    return True\n", **cfg: Any) -> Runner:
        settings = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g", **cfg)
        clients = KafkaClients(FakeConsumer({}), RecordingProducer({"message.max.bytes": settings.max_message_bytes}))
        r = Runner(settings, clients, InlineFilters(src), VisitCap(None), "bright", SHA)
        r.on_assign(r.consumer, [TopicPartition("in", 0)])
        return r

    return make


FORGED = [
    ("alertfilter.filter", b"someone-else"),
    ("AlertFilter.Source-SHA256", b"0" * 64),
    ("alertfilter.visit", b"666"),
    ("alertfilter.error.reason", b"forged"),
    ("alertfilter.source.offset", b"999"),
    ("trace-id", b"keep-me"),
]


def own(headers: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in headers if k.lower().startswith("alertfilter.")]


def test_forged_provenance_headers_are_replaced_on_the_output(runner):
    r = runner()
    r.process_batch([Msg(0, container(1, visit=7), headers=list(FORGED))])
    ((topic, headers),) = r.producer.raw
    assert topic == "out"
    assert ("trace-id", b"keep-me") in headers  # the alert's other headers are kept
    assert own(headers) == [(H_FILTER, b"bright"), (H_SHA, SHA.encode()), (H_VISIT, b"7")]


def test_forged_provenance_headers_are_replaced_on_a_dead_letter(runner):
    r = runner("def f(a):\n    raise ValueError('no')\n")
    r.process_batch([Msg(3, container(1, visit=7), headers=list(FORGED))])
    ((topic, headers),) = r.producer.raw
    assert topic == "out.deadletter"
    assert ("trace-id", b"keep-me") in headers
    names = [k.lower() for k, _ in own(headers)]
    assert len(names) == len(set(names))  # one of each: no forged copy before the runner's own
    got = dict(own(headers))
    assert got[H_FILTER] == b"bright" and got[H_REASON] == b"filter-exception" and got[H_SRC_OFFSET] == b"3"


def test_output_too_large_because_of_headers_says_so(runner):
    r = runner(max_message_bytes=1_000_000)
    r.process_batch([Msg(0, container(1), headers=[("big", b"h" * 5_000_000)])])
    dls = [h for t, h in r.producer.raw if t == "out.deadletter"]
    assert dls, "the accepted alert should have become an output-too-large dead letter"
    got = dict(own(dls[-1]))
    assert got[H_REASON] == b"output-too-large"
    message = (got[H_MESSAGE] or b"").decode()
    value_size = len(container(1))
    assert f"the alert {value_size:,}" in message and "headers 5,000," in message  # each part's size
    assert message.endswith("most of it is the headers")  # blamed on the headers, not the alert's size


def test_output_too_large_because_of_the_alert_says_so(runner):
    r = runner(max_message_bytes=200_000)
    r.process_batch([Msg(0, container(1, pad=300_000))])
    dls = [h for t, h in r.producer.raw if t == "out.deadletter"]
    message = (dict(own(dls[-1]))[H_MESSAGE] or b"").decode()
    assert message.endswith("most of it is the alert")
