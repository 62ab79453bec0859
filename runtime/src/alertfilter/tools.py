"""The tools of the original alert distribution system: produce, consume, check.

- :func:`produce`: send container files' alerts to a topic in the Confluent wire format, one
  visit at a time at a cadence (39 s by default, the original sender's, DMTN-028).
- :func:`consume`: summarise, print or count a topic's alerts.
- :func:`check`: backtest a filter offline on alert files, in file order (:mod:`.backtest`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import fastavro

from .backtest import AlertFileError, CheckResult, check, missing_files
from .codecs import DecodeError, Decoder, encode_confluent, read_container
from .fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD, MissingField, get_field, parse_path

__all__ = [
    "AlertFileError",
    "CheckResult",
    "ConsumeSummary",
    "ProduceResult",
    "check",
    "consume",
    "jsonable",
    "missing_files",
    "plan_visits",
    "produce",
]

#: The original sender's cadence: one visit every 39 s (DMTN-028; LSST's ~30 s exposure + overheads).
DEFAULT_CADENCE_S = 39.0


@dataclass
class ProduceResult:
    alerts: int = 0
    visits: int = 0
    bytes: int = 0
    seconds: float = 0.0
    schema_ids: list[int] = field(default_factory=list)


def _set_field(alert: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    target = alert
    for p in parts[:-1]:
        target = target[p]
    target[parts[-1]] = value


def plan_visits(
    files: list[str | Path],
    copies: int = 1,
    alerts_per_visit: int = 0,
    visit_field: str = DEFAULT_VISIT_FIELD,
    first_visit: int | None = None,
) -> tuple[list[tuple[dict[str, Any], list[dict[str, Any]]]], list[list[tuple[int, int]]]]:
    """Group the alerts of ``files`` (replicated ``copies`` times) into visits.

    Returns:
        ``(sources, visits)``: ``sources`` is ``[(writer_schema, records), ...]`` per file; ``visits``
        is a list of visits, each a list of ``(file_index, record_index)``. With
        ``alerts_per_visit`` 0 the alerts keep their own visit ids (grouped by visit, in order of
        first appearance); otherwise consecutive chunks of that size become visits.
    """
    vpath = parse_path(visit_field)
    sources = [read_container(str(f)) for f in files]
    order = [(fi, ri) for _ in range(copies) for fi, (_, recs) in enumerate(sources) for ri in range(len(recs))]
    if alerts_per_visit:
        return sources, [order[i : i + alerts_per_visit] for i in range(0, len(order), alerts_per_visit)]
    groups: OrderedDict[Any, list[tuple[int, int]]] = OrderedDict()
    copy_len = len(order) // max(copies, 1)
    for n, (fi, ri) in enumerate(order):
        visit = get_field(sources[fi][1][ri], vpath)
        groups.setdefault((n // copy_len if copies > 1 else 0, visit), []).append((fi, ri))
    return sources, list(groups.values())


def produce(
    bootstrap: str,
    topic: str,
    files: list[str | Path],
    schema_id: int | None = None,
    copies: int = 1,
    alerts_per_visit: int = 0,
    cadence_s: float = DEFAULT_CADENCE_S,
    visit_field: str = DEFAULT_VISIT_FIELD,
    id_field: str = DEFAULT_ID_FIELD,
    first_visit: int = 1,
    first_id: int = 1,
    renumber: bool | None = None,
    partitions: int = 1,
    write_schema_dir: str | Path | None = None,
    out: TextIO = sys.stderr,
    kafka_config: dict[str, str] | None = None,
) -> ProduceResult:
    """Send the alerts of container ``files`` to ``topic``, one visit every ``cadence_s`` seconds.

    Args:
        schema_id: id written in each message's header; by default derived from the file's schema
            name (``lsst.v10_0.alert`` → 1000).
        copies: send the files' alerts this many times.
        alerts_per_visit: regroup into visits of this many alerts with new visit ids
            ``first_visit, first_visit+1, ...`` (0 keeps the files' visits).
        renumber: give alerts new sequential ids from ``first_id`` (at ``id_field`` and
            ``diaSource.diaSourceId``); default: when ``copies > 1``, so replicated alerts stay distinct.
        partitions: partitions of the topic when it must be created.
        write_schema_dir: also write ``<schema id>.avsc`` there, for ``--schema-dir`` of readers.

    Raises:
        ValueError: no schema id given and none derivable; KafkaException: the broker refused.
    """
    from confluent_kafka import Producer

    from .kafkautil import ensure_topics
    from .schemas import rubin_schema_id

    kafka_config = kafka_config or {}
    renumber = copies > 1 if renumber is None else renumber
    sources, visits = plan_visits(files, copies, alerts_per_visit, visit_field)
    ids: list[int] = []
    parsed = []
    for schema, _ in sources:
        sid = schema_id if schema_id is not None else rubin_schema_id(schema.get("name", ""))
        if sid is None:
            raise ValueError(f"cannot derive a schema id from schema {schema.get('name')!r}; pass --schema-id")
        ids.append(sid)
        parsed.append(fastavro.parse_schema(schema))
        if write_schema_dir is not None:
            Path(write_schema_dir).mkdir(parents=True, exist_ok=True)
            (Path(write_schema_dir) / f"{sid}.avsc").write_text(json.dumps(schema))
    ensure_topics(bootstrap, {topic: partitions}, kafka_config)
    # log_level 3: librdkafka logs errors only, not the harmless notices of a fresh broker
    # ("Coordinator load in progress: retrying"); kafka_config may set another level.
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "message.max.bytes": 16 * 1024 * 1024,
            "enable.idempotence": True,
            "log_level": 3,
            **kafka_config,
        }
    )
    vpath, ipath = parse_path(visit_field), parse_path(id_field)
    res = ProduceResult(schema_ids=sorted(set(ids)))
    t0 = time.monotonic()
    next_id = first_id
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for v_index, visit in enumerate(visits):
        start = t0 + v_index * cadence_s
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for fi, ri in visit:
            rec = sources[fi][1][ri]
            if alerts_per_visit:
                _set_field(rec, vpath, first_visit + v_index)
            if renumber:
                _set_field(rec, ipath, next_id)
                if isinstance(rec.get("diaSource"), dict) and "diaSourceId" in rec["diaSource"]:
                    rec["diaSource"]["diaSourceId"] = next_id
                next_id += 1
            value = encode_confluent(rec, parsed[fi], ids[fi])
            while True:
                try:
                    producer.produce(topic, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.5)
            producer.poll(0)
            res.alerts += 1
            res.bytes += len(value)
        producer.flush()
        res.visits += 1
        if cadence_s >= 1:
            print(f"visit {v_index + 1}/{len(visits)}: {len(visit)} alerts sent", file=out, flush=True)
    if producer.flush(60) > 0 or failures:
        raise RuntimeError(f"{len(failures)} alerts not delivered: {failures[:3]}")
    res.seconds = time.monotonic() - t0
    return res


# --- consume -------------------------------------------------------------------------------------
def _text(value: str | bytes | None) -> str | None:
    """A header value as text (None when empty)."""
    if not value:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def jsonable(value: Any) -> Any:
    """``value`` made JSON-serialisable: bytes as ``{"bytes": length}``, NaN as null, infinities as
    ``"Infinity"``/``"-Infinity"``, dict keys as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


@dataclass
class ConsumeSummary:
    messages: int = 0
    decoded: int = 0
    undecodable: int = 0
    per_visit: dict[str, int] = field(default_factory=dict)
    ids: list[Any] = field(default_factory=list)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


def consume(
    bootstrap: str,
    topic: str,
    decoder: Decoder | None,
    mode: str = "summary",
    idle_timeout_s: float = 5.0,
    max_messages: int | None = None,
    visit_field: str = DEFAULT_VISIT_FIELD,
    id_field: str = DEFAULT_ID_FIELD,
    out: TextIO = sys.stdout,
    kafka_config: dict[str, str] | None = None,
) -> ConsumeSummary:
    """Read ``topic`` from its beginning until it is idle for ``idle_timeout_s``.

    Args:
        decoder: decodes values; None to only count and read headers.
        mode: ``summary`` (return and print totals), ``json`` (one line per alert, cutout bytes
            replaced by their length), or ``count`` (print the number of messages, from the
            partitions' offsets, without reading them).
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"alertfilter-consume-{time.time_ns()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        **(kafka_config or {}),
    }
    consumer = Consumer(conf)
    summary = ConsumeSummary()
    try:
        md = consumer.list_topics(topic, timeout=10)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise RuntimeError(f"topic {topic!r} does not exist on {bootstrap}")
        parts = [TopicPartition(topic, p, 0) for p in sorted(tmd.partitions)]
        if mode == "count":
            total = 0
            for tp in parts:
                lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
                total += hi - lo
            summary.messages = total
            print(total, file=out)
            return summary
        consumer.assign([TopicPartition(topic, tp.partition, -2) for tp in parts])  # OFFSET_BEGINNING
        vpath, ipath = parse_path(visit_field), parse_path(id_field)
        eof: set[int] = set()
        last = time.monotonic()
        reasons: Counter[str] = Counter()
        visits: Counter[str] = Counter()
        while time.monotonic() - last < idle_timeout_s:
            msgs = consumer.consume(500, 0.5)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition() or 0)
                    continue
                last = time.monotonic()
                summary.messages += 1
                raw_headers = m.headers() or []
                pairs = list(raw_headers.items() if isinstance(raw_headers, dict) else raw_headers)
                headers = dict(pairs)
                reason = headers.get("alertfilter.error.reason")
                if isinstance(reason, bytes) and reason:
                    reasons[reason.decode()] += 1
                alert = None
                if decoder is not None and m.value():
                    try:
                        alert = decoder.decode(m.value())
                        summary.decoded += 1
                    except DecodeError:
                        summary.undecodable += 1
                if alert is not None:
                    with contextlib.suppress(MissingField):
                        summary.ids.append(get_field(alert, ipath, allow_null=True))
                    with contextlib.suppress(MissingField):
                        visits[str(get_field(alert, vpath))] += 1
                if mode == "json":
                    record = {
                        "topic": m.topic(),
                        "partition": m.partition(),
                        "offset": m.offset(),
                        "headers": {k: _text(v) for k, v in pairs},
                        "alert": jsonable(alert) if alert is not None else None,
                    }
                    print(json.dumps(record), file=out)
                if max_messages is not None and summary.messages >= max_messages:
                    break
            if max_messages is not None and summary.messages >= max_messages:
                break
            if len(eof) == len(parts) and not msgs and time.monotonic() - last > min(idle_timeout_s, 1.0):
                break
        summary.per_visit = dict(visits)
        summary.dead_letter_reasons = dict(reasons)
    finally:
        consumer.close()
    if mode == "summary":
        print(
            f"topic {topic}: {summary.messages} messages, {summary.decoded} decoded, {summary.undecodable} undecodable",
            file=out,
        )
        for v, n in sorted(summary.per_visit.items()):
            print(f"  visit {v}: {n} alerts", file=out)
        if summary.dead_letter_reasons:
            print(
                "  dead-letter reasons: "
                + ", ".join(f"{k}={v}" for k, v in sorted(summary.dead_letter_reasons.items())),
                file=out,
            )
        if summary.ids:
            print("  first ids: " + ", ".join(map(str, summary.ids[:10])), file=out)
    return summary
