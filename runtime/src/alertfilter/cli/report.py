"""``alertfilter report`` and what ``check`` shares with it: alert inputs as Kafka holds them
(container files, Confluent-wire messages, directories; ``--schema-dir`` / ``--schema-registry``),
field defaults told by the alerts' schema, and the HTML report (``report``, ``check --html``).

Exit codes of ``report``: 0 the page was written; 1 an input could not be read (nothing written);
2 a usage error (a missing file, a schema directory that does not exist, the report extra missing).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alertfilter.alertfiles import (
    SNIFF_BYTES,
    AlertInputError,
    WireDecoder,
    describe,
    first_schema_name,
    is_wire_header,
    read_alerts,
)
from alertfilter.cli.args import echo, fail, key_values
from alertfilter.schemas import DirectorySchemaSource, RegistrySchemaSource, SchemaSource
from alertfilter.surveys import field_defaults, schema_full_name, survey_of

EXTRA_HINT = "pip install 'alertfilter[report]'"
#: How long ``report`` of a topic waits for the first message or partition end, at least, s.
FIRST_WAIT_S = 30.0


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """``--schema-dir`` and ``--schema-registry``: where the writer schemas of wire-format inputs are."""
    p.add_argument(
        "--schema-dir",
        metavar="DIR",
        help="directory of .avsc files (<id>.avsc, or Rubin's lsst.vX_Y.alert.avsc) for inputs in the Confluent "
        "wire format, as the runner's --schema-dir",
    )
    p.add_argument(
        "--schema-registry", metavar="URL", help="schema registry for inputs in the Confluent wire format (wins)"
    )


def schema_source(args: argparse.Namespace, prog: str) -> SchemaSource | None:
    """The schema source ``--schema-registry`` / ``--schema-dir`` name, or None; exits 2 when it cannot be used."""
    try:
        if args.schema_registry:
            return RegistrySchemaSource(args.schema_registry)
        if args.schema_dir:
            return DirectorySchemaSource(args.schema_dir)
    except (FileNotFoundError, ImportError) as exc:
        fail(f"{prog}: {exc}")
    return None


def resolve_fields(args: argparse.Namespace, inputs: list[str], schemas: SchemaSource | None) -> str | None:
    """Fill ``args.visit_field`` / ``args.id_field`` left unset from the survey the first alert's
    schema names (Rubin's when unknown); returns that survey's name, or None."""
    survey = None
    if args.visit_field is None or args.id_field is None:
        name = first_schema_name(inputs, schemas)
        survey = survey_of(name) if name else None
    visit, ident = field_defaults(survey)
    args.visit_field = args.visit_field or visit
    args.id_field = args.id_field or ident
    return survey.name if survey else None


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="TOPIC_OR_FILES",
        help="alert files or directories (Avro container files, Confluent-wire messages); with --bootstrap-servers, "
        "one topic, read from its beginning",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the HTML page to write")
    p.add_argument("--title", help="the page's title (default: what was read)")
    p.add_argument("--max-alerts", type=int, default=200, help="draw at most this many alerts (default: 200)")
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers: read the topic TOPIC_OR_FILES")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        help="with a topic: it is read to the end of every partition; stop sooner after this long without a "
        "message once reading began (the first wait is at least 30 s), s",
    )
    p.add_argument("-X", action="append", metavar="KEY=VALUE", help="extra librdkafka setting (repeatable)")
    add_input_arguments(p)


def _topic_items(args: argparse.Namespace, schemas: SchemaSource | None) -> Iterator[Any]:
    """The alerts of the topic ``args.inputs[0]``, from its beginning to the end every partition has
    when it is reached (or until ``args.idle_timeout`` without a message; values in the Confluent
    wire format, or one Avro container each as ZTF publishes)."""
    import fastavro
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from alertfilter.report import ReportItem

    topic = args.inputs[0]
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": f"alertfilter-report-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,  # the end of each partition ends the page, not a pause
            **key_values(args.X),
        }
    )
    wire = WireDecoder(schemas)
    try:
        md = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            raise AlertInputError(f"topic {topic!r} does not exist on {args.bootstrap_servers}", topic)
        consumer.assign([TopicPartition(topic, p, -2) for p in sorted(md.partitions)])
        at_end: set[int] = set()
        last, began = time.monotonic(), False
        # a slow broker or a loaded machine may take seconds before the first fetch answers
        while len(at_end) < len(md.partitions) and time.monotonic() - last < (
            args.idle_timeout if began else max(args.idle_timeout, FIRST_WAIT_S)
        ):
            for m in consumer.consume(500, 0.5):
                last, began = time.monotonic(), True
                err = m.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise AlertInputError(f"topic {topic}: {err}", topic)
                    at_end.add(m.partition() or 0)
                    continue
                at_end.discard(m.partition() or 0)
                value = m.value() or b""
                where = f"{topic}/{m.partition()}@{m.offset()}"
                if value.startswith(b"Obj\x01"):
                    reader = fastavro.reader(io.BytesIO(value))
                    name = schema_full_name(reader.writer_schema)
                    for rec in reader:
                        yield ReportItem(rec, name, where)
                elif not is_wire_header(value, len(value)):  # a tombstone, text, another producer's bytes
                    what = "no value (a tombstone)" if m.value() is None else describe(value[:SNIFF_BYTES], len(value))
                    raise AlertInputError(f"{where} is not an alert: it holds {what}", where)
                else:
                    fa = wire.decode(value, where)
                    yield ReportItem(fa.record, schema_full_name(fa.schema), where)
    finally:
        consumer.close()


def _file_items(inputs: list[str], schemas: SchemaSource | None, only: set[tuple[str, int]] | None) -> Iterator[Any]:
    from alertfilter.report import ReportItem

    for fa in read_alerts(inputs, schemas):
        if only is None or (fa.path, fa.index) in only:
            yield ReportItem(fa.record, schema_full_name(fa.schema), f"{fa.path}#{fa.index}")


def write_page(out: str, items: Iterator[Any], title: str, note: str, max_alerts: int, prog: str) -> int:
    """Write the report of ``items`` to ``out``; 0, or 1 when an input cannot be read (said on stderr)."""
    try:
        from alertfilter import report
    except ImportError as exc:
        fail(f"{prog}: the report needs astropy and matplotlib ({exc}): {EXTRA_HINT}")
    try:
        report.write(out, items, title, note, max_alerts)
    except ImportError as exc:
        fail(f"{prog}: the report needs astropy and matplotlib ({exc}): {EXTRA_HINT}")
    except (AlertInputError, FileNotFoundError) as exc:
        echo(f"{prog}: {exc}; {out} not written", file=sys.stderr)
        return 1
    except OSError as exc:
        fail(f"{prog}: cannot write {out}: {exc}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``alertfilter report``; returns the exit code (see the module's docstring)."""
    prog = "alertfilter report"
    schemas = schema_source(args, prog)
    if args.bootstrap_servers:
        if len(args.inputs) != 1:
            fail(f"{prog}: with --bootstrap-servers, give one topic (got {len(args.inputs)} arguments)")
        items, title = _topic_items(args, schemas), f"Alerts of topic {args.inputs[0]}"
    else:
        missing = [p for p in args.inputs if not Path(p).exists()]
        if missing:
            fail(f"{prog}: cannot read alerts: no such file: {', '.join(missing)}")
        items, title = (
            _file_items(args.inputs, schemas, None),
            "Alerts of " + ", ".join(Path(p).name for p in args.inputs),
        )
    code = write_page(args.out, items, args.title or title, "", args.max_alerts, prog)
    if code == 0:
        echo(f"wrote {args.out}")
    return code


def write_check_report(args: argparse.Namespace, res: Any, schemas: SchemaSource | None) -> int:
    """``check --html FILE``: the report of the alerts the filter accepted (``res.accepted_at``)."""
    only = set(res.accepted_at)
    note = f"filter {args.filter}: {res.accepted} accepted of {res.alerts} ({res.capped} capped, {res.errors} errors)"
    code = write_page(
        args.html,
        _file_items(args.alerts, schemas, only),
        f"Accepted by {Path(args.filter).name}",
        note,
        args.max_report_alerts,
        "alertfilter check",
    )
    if code == 0:
        echo(f"report: {args.html}", file=sys.stderr)
    return code
