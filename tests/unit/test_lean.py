"""The lean stream's splice and producer without a broker: cutouts null, nothing else changed,
every message forwarded (whole with a reason when it cannot be spliced), offsets committed only
once acknowledged, each alert to its input partition."""

from __future__ import annotations

import io
import threading
from typing import Any

import fastavro
import pytest
from confluent_kafka import KafkaError

from alertfilter.codecs import encode_confluent
from alertfilter.lean import (
    H_LEAN_OFFSET,
    H_LEAN_PARTITION,
    H_LEAN_TOPIC,
    H_LEAN_UNSPLICED,
    NotSpliceable,
    Splicer,
    cutout_fields,
    reads_cutouts,
)
from alertfilter.leanstream import LeanProducer, Splicers, lean_headers, lean_value
from alertfilter.schemas import SchemaNotFound, SchemaSourceError, StaticSchemaSource
from alertfilter.settings import RunnerSettings
from tests.unit.cli_run import run

RUBIN_LIKE = {
    "type": "record",
    "name": "alert",
    "namespace": "lsst.v10_0",
    "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "cutoutDifference", "type": ["null", "bytes"], "default": None},
        {"name": "diaSource", "type": {"type": "record", "name": "S", "fields": [{"name": "visit", "type": "long"}]}},
        {"name": "prvDiaSources", "type": ["null", {"type": "array", "items": "S"}], "default": None},
        {"name": "cutoutScience", "type": ["bytes", "null"]},  # null second: its branch index is 1
        {"name": "cutoutTemplate", "type": ["null", "bytes"], "default": None},
        {"name": "note", "type": "string"},
    ],
}
PARSED = fastavro.parse_schema(RUBIN_LIKE)


def record(i: int, cut: bytes | None = b"F" * 3000) -> dict[str, Any]:
    return {
        "diaSourceId": i,
        "cutoutDifference": cut,
        "diaSource": {"visit": 7},
        "prvDiaSources": [{"visit": k} for k in range(i % 4)],
        "cutoutScience": cut if cut is not None else b"",
        "cutoutTemplate": None,
        "note": "cutoutScience",
    }


def body(rec: dict[str, Any]) -> bytes:
    b = io.BytesIO()
    fastavro.schemaless_writer(b, PARSED, rec)
    return b.getvalue()


def decode(b: bytes) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(b), PARSED)  # type: ignore[return-value]


def test_every_cutout_becomes_null_whatever_its_null_branch_and_the_rest_is_unchanged():
    sp = Splicer(RUBIN_LIKE)
    assert sp.fields == ["cutoutDifference", "cutoutScience", "cutoutTemplate"]
    for i in range(6):
        rec = record(i)
        got = decode(sp.splice(body(rec)))
        assert got == {**rec, "cutoutDifference": None, "cutoutScience": None, "cutoutTemplate": None}


def test_the_simulated_2018_schema_has_two_cutouts():
    schema = {
        "type": "record",
        "name": "alert",
        "namespace": "lsst",
        "fields": [
            {"name": "alertId", "type": "long"},
            {"name": "cutoutDifference", "type": ["null", "bytes"]},
            {"name": "cutoutTemplate", "type": ["null", "bytes"]},
            {"name": "cutoutScience", "type": "string"},  # no cutout of this survey: left alone
        ],
    }
    assert cutout_fields(schema) == ["cutoutDifference", "cutoutTemplate"]
    assert Splicer(schema).fields == ["cutoutDifference", "cutoutTemplate"]


def test_a_cutout_that_is_not_a_nullable_union_is_refused_clearly():
    schema = {**RUBIN_LIKE, "fields": [*RUBIN_LIKE["fields"][:1], {"name": "cutoutDifference", "type": "bytes"}]}
    with pytest.raises(NotSpliceable, match=r"cutoutDifference.*lsst.v10_0.alert.*'bytes', not a nullable union"):
        Splicer(schema)


def test_corrupt_or_trailing_bytes_are_refused():
    sp = Splicer(RUBIN_LIKE)
    b = body(record(1))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        sp.splice(b[:-40])
    with pytest.raises(ValueError, match="left over"):
        sp.splice(b + b"\x00")


def test_messages_that_cannot_be_spliced_are_forwarded_whole_with_a_reason():
    good = encode_confluent(record(1), PARSED, 1000)
    refused = {**RUBIN_LIKE, "name": "x", "fields": [{"name": "cutoutScience", "type": "bytes"}]}

    class Source:
        def get(self, sid: int) -> dict[str, Any]:
            if sid == 9:
                raise SchemaSourceError("registry unreachable")
            return {1000: RUBIN_LIKE, 1001: refused}.get(sid) or (_ for _ in ()).throw(SchemaNotFound(f"no {sid}"))

    splicers = Splicers(Source())
    lean, reason = lean_value(good, splicers)
    assert reason is None and lean is not None and decode(lean[5:])["cutoutDifference"] is None
    for value, why in [
        (b"\x01" + good[1:], "not-confluent"),
        (b"", "not-confluent"),
        (None, "not-confluent"),
        (good[:5].replace(b"\x03\xe8", b"\x03\xe9") + good[5:], "schema-refused"),
        (b"\x00\x00\x00\x00\x05" + good[5:], "unknown-schema"),
        (b"\x00\x00\x00\x00\x09" + good[5:], "schema-unavailable"),
        (good[:-30], "corrupt"),
    ]:
        assert lean_value(value, splicers) == (value, why)


def test_a_schema_the_splicer_cannot_take_or_a_body_that_breaks_it_never_stops_the_stream():
    # records nested 1,500 deep (Python's recursion limit), an array of nulls whose count is 2^62
    def deep(n: int) -> dict[str, Any]:
        inner: Any = "long"
        for k in range(n):
            inner = {"type": "record", "name": f"r{k}", "fields": [{"name": "x", "type": inner}]}
        return {**inner, "fields": [*inner["fields"], {"name": "cutoutScience", "type": ["null", "bytes"]}]}

    nulls = {
        "type": "record",
        "name": "alert",
        "fields": [
            {"name": "flags", "type": {"type": "array", "items": "null"}},
            {"name": "cutoutScience", "type": ["null", "bytes"]},
        ],
    }
    splicers = Splicers(StaticSchemaSource({7: deep(1500), 8: nulls}))
    value = b"\x00\x00\x00\x00\x07\x02\x00"
    assert lean_value(value, splicers) == (value, "schema-refused")
    # zig-zag 2^62 then the end of the array, then the cutout (null): a legal body, spliced at once
    huge = b"\x00\x00\x00\x00\x08" + b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01" + b"\x00\x00"
    lean, reason = lean_value(huge, splicers)
    assert reason is None and lean == huge


def test_lean_headers_keep_the_originals_and_name_the_source_but_never_a_forged_lean_header():
    got = lean_headers([("trace", b"1"), ("alertfilter.lean.source-offset", b"0"), ("x", None)], "alerts", 3, 41)
    assert got == [
        ("trace", b"1"),
        ("x", None),
        (H_LEAN_TOPIC, b"alerts"),
        (H_LEAN_PARTITION, b"3"),
        (H_LEAN_OFFSET, b"41"),
    ]


def test_which_fields_read_a_cutout():
    assert not reads_cutouts({"diaSource", "diaSourceId", "prvDiaSources.psfFlux", "prvDiaSources[band]"})
    assert reads_cutouts({"diaSource", "cutoutScience"})
    assert reads_cutouts({"cutoutTemplate.stampData"})
    assert reads_cutouts(None)  # unknown: everything is read


# --- the producer, with fake clients -------------------------------------------------------------
class M:
    def __init__(self, p: int, o: int, value: bytes | None, key: bytes | None = None, headers: Any = None) -> None:
        self._p, self._o, self._v, self._k, self._h = p, o, value, key, headers

    def topic(self) -> str:
        return "alerts"

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def headers(self) -> Any:
        return self._h

    def timestamp(self) -> tuple[int, int]:
        """Produced at a time of its own (ms), none for offset 11, as a broker without timestamps."""
        return (0, -1) if self._o == 11 else (1, 1_700_000_000_000 + self._o)

    def error(self) -> None:
        return None


class Consumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[int, int]]] = []

    def commit(self, offsets: Any, asynchronous: bool = True) -> None:
        self.commits.append(sorted((tp.partition, tp.offset) for tp in offsets))


class Producer:
    def __init__(self) -> None:
        self.queue: list[tuple[dict[str, Any], Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.fail: set[int] = set()

    def produce(self, topic: str, **kw: Any) -> None:
        self.queue.append(({"topic": topic, **kw}, kw.pop("on_delivery")))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        queue, self.queue = self.queue, []
        for rec, cb in queue:
            n = len(self.sent)
            self.sent.append(rec)
            cb(KafkaError(KafkaError._MSG_TIMED_OUT) if n in self.fail else None, None)
        return 0


def producer() -> tuple[LeanProducer, Consumer, Producer]:
    s = RunnerSettings("b:9092", "alerts", "alerts.lean", "alerts.lean", "g")
    c, p = Consumer(), Producer()
    splicers = Splicers(StaticSchemaSource({1000: RUBIN_LIKE}))
    return LeanProducer(s, c, p, splicers, stop=threading.Event()), c, p


def test_each_alert_goes_to_its_input_partition_with_its_key_and_headers_and_offsets_wait_for_acks():
    lp, consumer, prod = producer()
    full = [encode_confluent(record(i), PARSED, 1000) for i in range(4)]
    part = [
        M(2, 10, full[0], b"k0", [("h", b"v")]),
        M(0, 5, full[1]),
        M(2, 11, b"junk", b"k2"),
        M(0, 6, full[3]),
    ]
    lp.produce_batch(part)
    assert consumer.commits == []  # nothing acknowledged yet: nothing committed
    prod.flush()
    lp._commit_acknowledged()
    assert consumer.commits == [[(0, 7), (2, 12)]]
    sent = prod.sent
    assert [(r["topic"], r["partition"], r["key"]) for r in sent] == [
        ("alerts.lean", 2, b"k0"),
        ("alerts.lean", 0, None),
        ("alerts.lean", 2, b"k2"),
        ("alerts.lean", 0, None),
    ]
    # each copy keeps its original's time (startFrom/replayFrom), none when the original has none
    assert [r.get("timestamp") for r in sent] == [1_700_000_000_010, 1_700_000_000_005, None, 1_700_000_000_006]
    assert decode(sent[0]["value"][5:]) == {**record(0), "cutoutDifference": None, "cutoutScience": None}
    assert dict(sent[0]["headers"]) == {
        "h": b"v",
        H_LEAN_TOPIC: b"alerts",
        H_LEAN_PARTITION: b"2",
        H_LEAN_OFFSET: b"10",
    }
    assert sent[2]["value"] == b"junk" and dict(sent[2]["headers"])[H_LEAN_UNSPLICED] == b"not-confluent"
    assert lp.totals["in"] == lp.totals["out"] == 4 and lp.totals["unspliced"] == 1
    assert lp.totals["bytes_out"] < lp.totals["bytes_in"] / 2


def test_an_unacknowledged_record_stops_the_producer_before_its_offsets_are_committed():
    from alertfilter.leanstream import DeliveryFailed

    lp, consumer, prod = producer()
    prod.fail = {1}
    lp.produce_batch([M(0, 0, b"a"), M(0, 1, b"b")])
    prod.flush()
    with pytest.raises(DeliveryFailed, match=r"alerts\[0\]@1"):
        lp._commit_acknowledged()
    assert consumer.commits == []


# --- the command line ----------------------------------------------------------------------------
def test_lean_is_a_command_with_the_options_of_run_as_variables(capsys):
    code, out, _ = run(capsys, "lean", "--help")
    assert code == 0 and "--lean-topic" in out and "cutoutDifference" in out
    code, _, err = run(capsys, "lean", "--input", "alerts")
    assert code == 2 and "--bootstrap-servers (or ALERTFILTER_BOOTSTRAP_SERVERS) is required" in err


def test_lean_needs_a_schema_source(capsys, monkeypatch):
    monkeypatch.setenv("ALERTFILTER_BOOTSTRAP_SERVERS", "localhost:1")
    monkeypatch.setenv("ALERTFILTER_INPUT", "alerts")
    code, _, err = run(capsys, "lean")
    assert code == 2 and "--schema-dir or --schema-registry is required" in err
    monkeypatch.setenv("ALERTFILTER_BATCH_SIZE", "0")
    code, _, err = run(capsys, "lean")
    assert code == 2 and "ALERTFILTER_BATCH_SIZE='0'" in err


def test_lean_settings_default_the_topic_and_group():
    from alertfilter.cli import build_parser
    from alertfilter.cli.args import resolve_env
    from alertfilter.cli.lean import LEAN_OPTIONS, lean_settings

    args = build_parser().parse_args(["lean", "--bootstrap-servers", "b:1", "--input", "alerts"])
    resolve_env(args, "t", {}, LEAN_OPTIONS)
    s = lean_settings(args, {})
    assert (s.input_topic, s.output_topic, s.group_id) == ("alerts", "alerts.lean", "alertfilter-lean-alerts")
