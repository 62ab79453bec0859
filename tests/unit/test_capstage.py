"""The cap stage against fake Kafka clients: the first N distinct candidates of each visit forwarded
as the runner forwards with one replica, its ledger in the commit metadata (a restarted stage goes
on exactly), a refused commit or an aborted transaction read again, the drain of a lone runner."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from alertfilter.candidates import candidate_headers, visit_key
from alertfilter.cap import StagedCap, VisitCap
from alertfilter.caphandover import cap_stage, input_counts
from alertfilter.capstage import CapStage, stage_settings
from alertfilter.clients import KafkaClients
from alertfilter.metrics import Heartbeat, RunnerMetrics
from alertfilter.outcome import Kind, Outcome
from alertfilter.settings import RunnerSettings
from alertfilter.sink import Sink

from .kafka_fakes import FakeProducer, Msg

CANDS = "out.candidates"
BASE = [("alertfilter.filter", b"f"), ("alertfilter.source-sha256", b"0" * 64)]


class Eof:
    def __init__(self, partition: int, offset: int) -> None:
        self.p, self.o = partition, offset

    def error(self) -> KafkaError:
        return KafkaError(KafkaError._PARTITION_EOF)

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


class Broker:
    """What survives a stage: the candidates (by partition) and the group's commits."""

    def __init__(self) -> None:
        self.log: dict[int, list[Msg]] = {0: [], 1: [], 2: []}
        self.commits: dict[int, tuple[int, str | None]] = {}

    def add(self, partition: int, source: Msg, visit: Any) -> None:
        part = self.log[partition]
        headers = candidate_headers(source, source.offset() * 10)
        part.append(Msg(len(part), source.value(), partition, CANDS, headers, visit_key(visit)))  # type: ignore[arg-type]


class FakeStageConsumer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.pos: dict[int, int] = {}
        self.commit_errors: list[KafkaError] = []
        self.seeks: list[tuple[int, int]] = []

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        parts = [TopicPartition(CANDS, p) for p in self.broker.log]
        on_assign(self, parts)
        for tp in self.committed(parts):
            self.pos[tp.partition] = max(tp.offset, 0)

    def consume(self, n: int, timeout: float) -> list[Any]:
        out: list[Any] = []
        for p, msgs in self.broker.log.items():
            if p in self.pos:
                new = msgs[self.pos[p] : self.pos[p] + n]
                self.pos[p] += len(new)
                out += new or [Eof(p, len(msgs))]
        return out

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        out = []
        for tp in partitions:
            offset, meta = self.broker.commits.get(tp.partition, (-1001, None))
            out.append(
                TopicPartition(CANDS, tp.partition, offset, meta)
                if meta
                else TopicPartition(CANDS, tp.partition, offset)
            )
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = False) -> list[TopicPartition]:
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))
        for tp in offsets:
            self.broker.commits[tp.partition] = (tp.offset, tp.metadata)
        return offsets

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.pos[tp.partition] = tp.offset

    def consumer_group_metadata(self) -> bytes:
        return b"cgmd"

    def list_topics(self, topic: str, timeout: float = 0) -> Any:
        parts = dict.fromkeys(self.broker.log)
        return type("Md", (), {"topics": {topic: type("T", (), {"partitions": parts})()}})()

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0) -> tuple[int, int]:
        return 0, len(self.broker.log[tp.partition])

    def close(self) -> None:
        pass


class TxProducer(FakeProducer):
    """A transactional fake: records become visible (``delivered``) only when committed."""

    def __init__(self, conf: dict[str, Any], consumer: FakeStageConsumer) -> None:
        super().__init__(conf)
        self.consumer = consumer
        self.calls: list[str] = []
        self.commit_errors: list[KafkaError] = []
        self._pending: list[tuple[int, str | None, int]] = []
        self._mark = 0

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")
        self._mark = len(self.delivered)

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], meta: bytes, timeout: float) -> None:
        self.calls.append("offsets")
        self._pending = [(tp.partition, tp.metadata, tp.offset) for tp in offsets]

    def commit_transaction(self, timeout: float) -> None:
        self.flush()
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))
        self.calls.append("commit")
        for p, meta, offset in self._pending:
            self.consumer.broker.commits[p] = (offset, meta)

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")
        del self.delivered[self._mark :]


def settings(**kw: Any) -> RunnerSettings:
    s = RunnerSettings(
        "fake:9092", "alerts", "out", "out.deadletter", "g", candidates_topic=CANDS, cap_stage=True, **kw
    )
    return stage_settings(s)


def make_stage(
    broker: Broker, n: int = 2, eos: bool = False, seed: dict[Any, int] | None = None, seed_generation: int = 0
) -> tuple[CapStage, FakeStageConsumer, FakeProducer]:
    consumer = FakeStageConsumer(broker)
    conf = {"message.max.bytes": 4 * 1024 * 1024}
    producer = TxProducer(conf, consumer) if eos else FakeProducer(conf)
    clients = KafkaClients(consumer, producer)
    stage = CapStage(settings(exactly_once=eos), clients, n, list(BASE), RunnerMetrics(), seed, seed_generation)
    consumer.subscribe([CANDS], stage.on_assign, stage.on_revoke, stage.on_revoke)
    return stage, consumer, producer


def source(i: int, visit: Any) -> Msg:
    return Msg(i, f"alert-{i}-{visit}".encode(), i % 3, "alerts", [("origin", str(i).encode())], key=f"k{i}".encode())


def forwarded_ids(producer: FakeProducer) -> list[bytes | None]:
    return [d.value for d in producer.delivered if d.topic() == "out"]


def test_settings_of_the_stage() -> None:
    s = settings()
    assert (s.group_id, s.cap_stage, s.candidates_topic) == ("g.cap", False, CANDS)
    assert s.transactional().startswith("alertfilter-g-") and s.transactional().endswith(".cap")


def test_first_n_distinct_per_visit_forwarded_as_the_runner_forwards_them() -> None:
    broker = Broker()
    stream = [(source(i, v), v) for i, v in enumerate([7, 8, 7, 7, 8, 7, 8, 8])]
    for m, v in stream:
        broker.add(0 if v == 7 else 1, m, v)
    broker.add(0, stream[0][0], 7)  # a replica sent it again
    stage, _consumer, producer = make_stage(broker)
    stage.poll_once()
    producer.flush()
    assert forwarded_ids(producer) == [stream[i][0].value() for i in (0, 2, 1, 4)]
    assert stage.totals == {
        "candidates": 9,
        "accepted": 4,
        "capped": 4,
        "duplicates": 1,
        "errors": 0,
        "dead_letters": 0,
    }
    # byte for byte what the runner forwards with one replica
    plain = FakeProducer({"message.max.bytes": 4 * 1024 * 1024})
    s = RunnerSettings("fake:9092", "alerts", "out", "out.deadletter", "g")
    sink = Sink(
        plain,
        s,
        list(BASE),
        RunnerMetrics(),
        dict.fromkeys(("accepted", "errors", "dead_letters"), 0),
        Heartbeat(60),
        lambda: False,
    )
    for i in (0, 2, 1, 4):
        sink.forward(stream[i][0], Outcome(Kind.ACCEPTED, visit=stream[i][1]))
    plain.flush()
    assert [(d.value, d.headers) for d in plain.delivered] == [
        (d.value, d.headers) for d in producer.delivered if d.topic() == "out"
    ]


def test_a_restarted_stage_goes_on_from_its_committed_ledger() -> None:
    broker = Broker()
    for i in range(3):
        broker.add(0, source(i, 5), 5)
    first, _c, p1 = make_stage(broker, n=4)
    first.poll_once()
    assert broker.commits[0][0] == 3 and '"alerts"' in (broker.commits[0][1] or "")
    # the replica that sent offsets 1 and 2 died before committing its input: they come again, then new ones
    for i in (1, 2, 3, 4, 5):
        broker.add(0, source(i, 5), 5)
    second, _c, p2 = make_stage(broker, n=4)
    second.poll_once()
    p1.flush()
    p2.flush()
    assert forwarded_ids(p1) + forwarded_ids(p2) == [source(i, 5).value() for i in range(4)]
    assert second.totals["duplicates"] == 2 and second.totals["capped"] == 2


def test_a_refused_commit_reads_the_batch_again_with_the_ledger_as_before() -> None:
    broker = Broker()
    for i in range(3):
        broker.add(0, source(i, 1), 1)
    stage, consumer, producer = make_stage(broker, n=2)
    consumer.commit_errors.append(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    stage.poll_once()
    assert consumer.seeks == [(0, 0)] and stage.ledgers[0].count(1) == 0 and 0 not in broker.commits
    stage.poll_once()
    assert broker.commits[0][0] == 3 and stage.ledgers[0].count(1) == 2
    assert forwarded_ids(producer) == [source(i, 1).value() for i in (0, 1, 0, 1)]  # at-least-once


def test_exactly_once_commits_outputs_offsets_and_ledger_together_and_aborts_as_one() -> None:
    broker = Broker()
    for i in range(3):
        broker.add(1, source(i, 1), 1)
    stage, _consumer, producer = make_stage(broker, n=2, eos=True)
    assert isinstance(producer, TxProducer)
    producer.commit_errors.append(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))
    stage.poll_once()
    assert producer.calls == ["begin", "offsets", "abort"] and forwarded_ids(producer) == []
    assert 1 not in broker.commits and stage.ledgers[1].count(1) == 0
    stage.poll_once()
    assert producer.calls[3:] == ["begin", "offsets", "commit"]
    assert forwarded_ids(producer) == [source(0, 1).value(), source(1, 1).value()]
    assert broker.commits[1][0] == 3 and "[1,2," in (broker.commits[1][1] or "")


def test_at_the_end_of_a_partition_its_end_is_committed_past_transaction_markers() -> None:
    broker = Broker()
    broker.add(2, source(0, 1), 1)
    stage, _consumer, _producer = make_stage(broker)
    stage.poll_once()
    assert broker.commits[2][0] == 1
    broker.log[2].append(Msg(1, None, 2, CANDS))  # stands for a commit marker: never a message
    stage._eof[2] = 2
    stage.poll_once()
    assert broker.commits[2][0] == 2 and stage.done()


def test_the_seed_of_an_in_process_cap_counts() -> None:
    broker = Broker()
    for i in range(4):
        broker.add(0, source(i, 9), 9)
    stage, _c, producer = make_stage(broker, n=3, seed={9: 2})
    stage.poll_once()
    assert forwarded_ids(producer) == [source(0, 9).value()]


class InputConsumer:
    """The runner's consumer, as the handover reads it: the input's committed offsets and metadata."""

    def __init__(self, metadata: dict[int, str]) -> None:
        self.metadata = metadata

    def list_topics(self, topic: str | None = None, timeout: float = 0) -> Any:
        t = type("T", (), {"error": None, "partitions": dict.fromkeys(self.metadata)})()
        return type("Md", (), {"topics": dict.fromkeys(("alerts", "out", "out.deadletter", CANDS), t)})()

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [TopicPartition("alerts", tp.partition, 5, self.metadata[tp.partition]) for tp in partitions]


def lone_runner(cap: VisitCap, consumer: Any, **kw: Any) -> Any:
    s = RunnerSettings(
        "fake:9092", "alerts", "out", "out.deadletter", "g", candidates_topic=CANDS, topic_wait_s=1, **kw
    )
    sink = SimpleNamespace(base_headers=list(BASE), generation=int)
    return SimpleNamespace(settings=s, consumer=consumer, cap=cap, metrics=RunnerMetrics(), sink=sink, positions=None)


@pytest.mark.parametrize(("input_meta", "restored"), [("[]", True), ('{"cap":[],"replay":[3,0]}', False)])
def test_a_lone_runner_drains_the_candidates_and_takes_their_counts(input_meta: str, restored: bool) -> None:
    broker = Broker()
    for i in range(5):
        broker.add(i % 2, source(i, i % 2), i % 2)
    made: list[FakeProducer] = []

    def make(s: RunnerSettings, _events: Any) -> KafkaClients:
        assert s.group_id == "g.cap" and not s.cap_stage
        made.append(FakeProducer({"message.max.bytes": 1 << 20}))
        return KafkaClients(FakeStageConsumer(broker), made[-1])

    cap = VisitCap(2)
    with cap_stage(lone_runner(cap, InputConsumer({0: input_meta})), threading.Event(), make) as stage:
        assert stage is None
    made[0].flush()
    assert len(forwarded_ids(made[0])) == 4  # 2 of visit 0 (3 candidates), 2 of visit 1
    # the stages' counts, unless the input is being replayed since (request 3): then counted afresh
    assert (cap.count(0), cap.count(1), cap.admit(0)) == ((2, 2, False) if restored else (0, 0, True))


def test_no_candidates_topic_or_no_cap_runs_no_stage() -> None:
    plain = lone_runner(VisitCap(3), None)
    plain.settings.candidates_topic = None
    with cap_stage(plain, threading.Event()) as stage:
        assert stage is None
    with cap_stage(lone_runner(VisitCap(None), None), threading.Event()) as stage:
        assert stage is None


def test_the_seed_is_the_in_process_cap_s_counts_of_the_latest_replay() -> None:
    s = lone_runner(VisitCap(3), None).settings
    meta = {0: '[[1, 2], ["x", 1]]', 1: "[[1, 3]]"}
    assert input_counts(InputConsumer(meta), s) == ({1: 3, "x": 1}, 0)
    meta = {0: '{"cap": [[1, 2]], "replay": [4, 10]}', 1: "[[1, 3]]"}  # partition 1 not yet rewound
    assert input_counts(InputConsumer(meta), s) == ({1: 2}, 4)
    s.replay_id = 5  # a new request: nothing counted under it yet
    assert input_counts(InputConsumer(meta), s) == ({}, 5)


def test_a_replay_starts_a_partition_s_ledger_afresh() -> None:
    broker = Broker()
    for i in range(3):
        broker.add(0, source(i, 4), 4)
    stage, _c, producer = make_stage(broker, n=2, seed={4: 1}, seed_generation=0)
    stage.poll_once()
    assert forwarded_ids(producer) == [source(0, 4).value()]  # the seed counted one
    for i in range(3):  # read again under replay request 2
        part = broker.log[0]
        headers = candidate_headers(source(i, 4), None, 2)
        part.append(Msg(len(part), source(i, 4).value(), 0, CANDS, headers, visit_key(4)))  # type: ignore[arg-type]
    stage.poll_once()
    assert forwarded_ids(producer)[1:] == [source(0, 4).value(), source(1, 4).value()]
    assert stage.ledgers[0].generation == 2 and '"g":2' in (broker.commits[0][1] or "")


def test_the_runner_of_a_cap_stage_admits_all_and_keeps_its_restored_counts() -> None:
    cap = StagedCap(2)
    cap.restore(['[["v", 2]]'])
    assert all(cap.admit("v") for _ in range(5)) and cap.snapshot() == '[["v",2]]'


@pytest.mark.parametrize(
    ("kw", "words"),
    [({"cap_stage": True}, "needs --candidates-topic"), ({"candidates_topic": "out"}, "cannot be the input, output")],
)
def test_settings_refuse_a_stage_without_its_topic(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        RunnerSettings("fake:9092", "alerts", "out", "out.deadletter", "g", **kw).validate(1.0)


def test_a_runner_with_a_cap_stage_sends_every_accepted_alert_to_the_candidates_topic() -> None:
    from alertfilter.runner import Runner

    from .kafka_fakes import FakeConsumer, container
    from .test_runner import InlineFilters

    s = RunnerSettings("fake:9092", "in", "out", "out.deadletter", "g", candidates_topic=CANDS, cap_stage=True)
    consumer, producer = FakeConsumer({}), FakeProducer({"message.max.bytes": s.max_message_bytes})
    consumer.committed_meta[0] = "[[3, 5]]"  # the in-process cap's counts, from before
    runner = Runner(
        s, KafkaClients(consumer, producer), InlineFilters("def f(a):\n    return True\n"), StagedCap(2), "f", "0" * 64
    )
    runner.on_assign(consumer, [TopicPartition("in", 0)])
    values = [container(i, visit=3) for i in range(4)]
    runner.process_batch([Msg(i, v, key=b"k", headers=[("h", b"1")]) for i, v in enumerate(values)])
    assert [(d.topic(), d.value) for d in producer.delivered] == [(CANDS, v) for v in values]
    assert (
        producer.delivered[0].headers["h"] == b"1"
        and producer.delivered[0].headers["alertfilter.candidate.key"] == b"k"
    )
    assert runner.totals["accepted"] == 0 and runner.totals["capped"] == 0  # the stage counts those
    assert (
        consumer.commits[-1][0].offset == 4 and consumer.commits[-1][0].metadata == "[[3,5]]"
    )  # carried for the stage
