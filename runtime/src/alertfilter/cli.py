"""The ``alertfilter`` command line: run, check, produce, consume, simulate.

Every option of ``run`` can also come from an environment variable ``ALERTFILTER_<OPTION>``
(upper case, dashes as underscores), which is how the operator configures runner pods.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .api import FilterSourceError, LoadedFilter, load_filter
from .cap import DEFAULT_MAX_ALERTS_PER_VISIT, VisitCap
from .codecs import BACKENDS, FORMATS, Decoder
from .schemas import DirectorySchemaSource, RegistrySchemaSource, SchemaSource, load_schema_file

log = logging.getLogger("alertfilter")


DESCRIPTION = ("alertfilter: run an astronomer's Python filter against a survey's alert stream (run), "
               "and the filter author's tools: backtest a filter offline (check), make test alerts (simulate), "
               "send alerts to a topic (produce) and read a topic back (consume).")

RUN_EPILOG = (
    "Environment: every option of run except -X can also be set as an environment variable "
    "ALERTFILTER_<OPTION> (upper case, dashes as underscores): --bootstrap-servers is "
    "ALERTFILTER_BOOTSTRAP_SERVERS, --max-alerts-per-visit is ALERTFILTER_MAX_ALERTS_PER_VISIT; flags take "
    "1, true, yes or on. An option given on the command line wins over its variable."
    "\n\n"
    "ALERTFILTER_KAFKA_<KEY> variables become librdkafka settings (lower case, underscores as dots): "
    "ALERTFILTER_KAFKA_SASL_USERNAME=alice is sasl.username=alice. ALERTFILTER_KAFKA_CONFIG holds "
    "key=value;key=value pairs. -X KEY=VALUE wins over both.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or False or its help already says it; wraps each
    paragraph (blank-line separated) of a description or epilog on its own."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if action.default is None or action.default is False or "default" in help_text:
            return help_text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(HelpFormatter, self)._fill_text(par, width, indent) for par in text.split("\n\n"))


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get("ALERTFILTER_" + name.upper().replace("-", "_"), default)


def kafka_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings from ``ALERTFILTER_KAFKA_<KEY>`` variables: ``ALERTFILTER_KAFKA_SASL_USERNAME``
    becomes ``sasl.username`` (lower case, ``_`` → ``.``). ``ALERTFILTER_KAFKA_CONFIG`` holds
    ``key=value;key=value`` pairs."""
    environ = dict(os.environ if environ is None else environ)
    out: dict[str, str] = {}
    for item in (environ.get("ALERTFILTER_KAFKA_CONFIG") or "").split(";"):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"alertfilter: ALERTFILTER_KAFKA_CONFIG expects key=value pairs separated by ';', got {item!r}")
            out[key.strip()] = value.strip()
    for name, value in environ.items():
        if name.startswith("ALERTFILTER_KAFKA_") and name != "ALERTFILTER_KAFKA_CONFIG":
            out[name[len("ALERTFILTER_KAFKA_"):].lower().replace("_", ".")] = value
    return out


def _env_bool(name: str) -> bool:
    return str(_env(name, "")).lower() in ("1", "true", "yes", "on")


def _kv(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"alertfilter: -X expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)


def _add_decoding(p: argparse.ArgumentParser, env: bool = False) -> None:
    e = _env if env else (lambda name, default=None: default)
    p.add_argument("--format", choices=FORMATS, default=e("format", "confluent"),
                   help="message format: confluent (Confluent wire format, how Rubin publishes), "
                        "schemaless (--schema) or container (an Avro container file per message)")
    p.add_argument("--schema-dir", default=e("schema-dir"),
                   help="directory of .avsc files: <id>.avsc, or Rubin's lsst.vX_Y.alert.avsc layout")
    p.add_argument("--schema-registry", default=e("schema-registry"), help="URL of a Confluent-compatible schema registry")
    p.add_argument("--schema", default=e("schema"), help="writer schema file, for --format schemaless")
    p.add_argument("--reader-schema", default=e("reader-schema"), help="optional reader schema file")
    p.add_argument("--decoder", choices=BACKENDS, default=e("decoder", "cavro"), help="Avro decoder")


def _decoder(args: argparse.Namespace) -> Decoder:
    schemas: SchemaSource | None = None
    if args.schema_registry:
        schemas = RegistrySchemaSource(args.schema_registry)
    elif args.schema_dir:
        schemas = DirectorySchemaSource(args.schema_dir)
    schema = load_schema_file(args.schema) if args.schema else None
    reader = load_schema_file(args.reader_schema) if args.reader_schema else None
    return Decoder(args.format, schemas, schema, reader, args.decoder)


def _add_filter_rules(p: argparse.ArgumentParser, env: bool = False) -> None:
    e = _env if env else (lambda name, default=None: default)
    p.add_argument("--entrypoint", default=e("entrypoint"), help="the class or function to use: needed when the source defines several classes deriving from "
                        "AlertFilter or, with no such class, several public functions")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--max-alerts-per-visit", type=int, default=int(e("max-alerts-per-visit", DEFAULT_MAX_ALERTS_PER_VISIT)),
                     help="accept at most N alerts per visit (20 is the original design's figure; 0: no cap)")
    cap.add_argument("--no-visit-cap", action="store_true", default=bool(env and _env_bool("no-visit-cap")),
                     help="no per-visit cap")
    p.add_argument("--visit-field", default=e("visit-field", "diaSource.visit"), help="dotted path of the visit id the cap counts by")
    p.add_argument("--id-field", default=e("id-field", "diaSourceId"), help="dotted path of the alert id shown in outputs and logs")
    p.add_argument("--filter-timeout", type=float, default=float(e("filter-timeout", 1.0)),
                   help="per-alert time budget of the filter call, s; over it the alert is an error (0: none)")


def _load_filter_file(path: str, entrypoint: str | None, json_errors: bool = False) -> LoadedFilter:
    """Load the filter at ``path``; a source error exits 2 after printing ``PATH:LINE:COLUMN: message``
    on stderr and, with ``json_errors``, ``{"error": {"line", "column", "message"}}`` on stdout."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"alertfilter: cannot read filter {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SystemExit(f"alertfilter: filter {path} is not UTF-8 text: {exc}") from None
    try:
        return load_filter(source, entrypoint)
    except FilterSourceError as exc:
        print(f"{path}:{exc.line}:{exc.column}: {exc.message}", file=sys.stderr)
        if json_errors:
            print(json.dumps({"error": exc.as_dict()}), flush=True)
        raise SystemExit(2) from None


def _cap(args: argparse.Namespace) -> int | None:
    """The cap N, or None for no cap (``--no-visit-cap`` or ``--max-alerts-per-visit 0``)."""
    if args.no_visit_cap or args.max_alerts_per_visit == 0:
        return None
    if args.max_alerts_per_visit < 0:
        raise SystemExit("alertfilter: --max-alerts-per-visit must be >= 0 (0 means no cap)")
    return args.max_alerts_per_visit


# --- subcommands ---------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .processor import AlertProcessor
    from .runner import Runner, RunnerConfig

    _setup_logging(args.log_format, args.log_level)
    if not args.filter:
        raise SystemExit("alertfilter run: --filter (or ALERTFILTER_FILTER) is required")
    for name in ("bootstrap_servers", "input", "output"):
        if not getattr(args, name):
            raise SystemExit(f"alertfilter run: --{name.replace('_', '-')} (or ALERTFILTER_{name.upper()}) is required")
    flt = _load_filter_file(args.filter, args.entrypoint)
    try:
        decoder = _decoder(args)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise SystemExit(f"alertfilter run: {exc}") from None
    name = args.name or flt.name
    processor = AlertProcessor(flt, decoder, VisitCap(_cap(args)), args.visit_field, args.id_field, args.filter_timeout)
    config = RunnerConfig(
        bootstrap_servers=args.bootstrap_servers, input_topic=args.input, output_topic=args.output,
        dead_letter_topic=args.dead_letter_topic or f"{args.output}.deadletter",
        group_id=args.group or f"alertfilter-{name}", batch_size=args.batch_size, exactly_once=args.exactly_once,
        transactional_id=args.transactional_id, max_message_bytes=args.max_message_bytes,
        metrics_port=args.metrics_port if args.metrics_port >= 0 else None, exit_when_idle_s=args.exit_when_idle,
        topic_wait_s=args.topic_wait,
        kafka_config={**kafka_env(), **_kv(args.X)})
    if args.create_topics:
        from .kafkautil import ensure_topics

        ensure_topics(config.bootstrap_servers, {config.output_topic: 1, config.dead_letter_topic: 1}, config.kafka_config)
    try:
        runner = Runner(config, processor)
    except ValueError as exc:
        raise SystemExit(f"alertfilter run: {exc}") from None
    log.info("filter %s (sha256 %s) %s -> %s, dead letters -> %s, group %s, %s", name, flt.source_sha256[:12],
             config.input_topic, config.output_topic, config.dead_letter_topic, config.group_id,
             "exactly-once" if config.exactly_once else "at-least-once")
    from .runner import TopicsMissing

    try:
        return runner.run()
    except TopicsMissing as exc:
        log.error("%s", exc)
        return 3


def cmd_check(args: argparse.Namespace) -> int:
    from .tools import check

    flt = _load_filter_file(args.filter, args.entrypoint, json_errors=args.json)
    try:
        res = check(flt, args.alerts, _cap(args), args.visit_field, args.id_field, args.filter_timeout)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"alertfilter check: cannot read alerts: {exc}") from None
    if args.json:
        print(json.dumps(res.as_dict()))
    else:
        print(f"{res.alerts} alerts: {res.accepted} accepted, {res.capped} capped, {res.rejected} rejected, "
              f"{res.errors} errors")
        for e in res.first_errors[:5]:
            print(f"  error at {e['file']}#{e['index']} (alert {e['alert_id']}): {e['reason']}: {e['message']}")
        if res.accepted_ids:
            print("accepted ids: " + ", ".join(map(str, res.accepted_ids[:20])) + (" ..." if res.accepted > 20 else ""))
        for line in check_warnings(res, args.visit_field, args.id_field):
            print(line)
    return 0


def check_warnings(res: Any, visit_field: str, id_field: str) -> list[str]:
    """The warning lines under ``check``'s text summary: alerts in error, ids not found."""
    lines = []
    if res.errors:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(res.errors_by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
        what = f"all {res.alerts}" if res.errors == res.alerts else f"{res.errors} of {res.alerts}"
        lines.append(f"warning: {what} alerts could not be filtered (reasons: {reasons}); see the first errors above")
        if "missing-visit-field" in res.errors_by_reason:
            lines.append(f"  the alerts lack the visit field {visit_field}: set --visit-field "
                         "(simulated lsst.alert alerts: --visit-field diaSource.ccdVisitId)")
    if res.accepted_ids and all(i is None for i in res.accepted_ids):
        lines.append(f"note: the accepted alerts have no id at {id_field}: set --id-field "
                     "(simulated lsst.alert alerts: --id-field alertId)")
    return lines


def cmd_produce(args: argparse.Namespace) -> int:
    from .tools import produce

    res = produce(args.bootstrap_servers, args.topic, args.files, args.schema_id, args.copies, args.alerts_per_visit,
                  args.cadence, args.visit_field, args.id_field, args.first_visit, args.first_id,
                  True if args.renumber else (False if args.keep_ids else None), args.partitions,
                  args.write_schema_dir, kafka_config=_kv(args.X))
    print(json.dumps({"alerts": res.alerts, "visits": res.visits, "bytes": res.bytes,
                      "seconds": round(res.seconds, 3), "schema_ids": res.schema_ids}))
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from .tools import consume

    decoder = None
    if args.mode != "count" and (args.schema_dir or args.schema_registry or args.schema or args.format == "container"):
        decoder = _decoder(args)
    consume(args.bootstrap_servers, args.topic, decoder, args.mode, args.idle_timeout, args.max_messages,
            args.visit_field, args.id_field, kafka_config=_kv(args.X))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import simulate, write_container

    if args.visits:
        visits = [int(v) for v in args.visits.split(",") if v]
    else:
        visits = list(range(args.first_visit, args.first_visit + args.n_visits))
    n = write_container(args.out, simulate(visits, args.alerts_per_visit, args.history, args.seed, args.cutout_bytes,
                                           args.first_id))
    print(json.dumps({"alerts": n, "visits": len(visits), "file": args.out}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alertfilter", description=DESCRIPTION, formatter_class=HelpFormatter,
                                epilog="Run 'alertfilter COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str | None = None, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=description or help_text[0].upper() + help_text[1:] + ".",
                              epilog=epilog, formatter_class=HelpFormatter)

    r = add("run", "run a filter against a Kafka topic (the filter-runner)",
            "Run a filter against a Kafka topic (the filter-runner): consume the alert stream, call the filter on "
            "each alert, write accepted alerts (at most N per visit) to the output topic and alerts that could not "
            "be filtered to the dead-letter topic. Every option can also be set as an environment variable "
            "ALERTFILTER_<OPTION> (see below).", RUN_EPILOG)
    r.add_argument("--filter", default=_env("filter"),
                   help="the filter's Python source file; required (or via the environment)")
    r.add_argument("--name", default=_env("name"),
                   help="filter name for headers, logs and the default group (default: the class or function name)")
    r.add_argument("--bootstrap-servers", default=_env("bootstrap-servers"),
                   help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]; required (or via the environment)")
    r.add_argument("--input", default=_env("input"),
                   help="input topic (the full alert stream); required (or via the environment)")
    r.add_argument("--output", default=_env("output"),
                   help="output topic for accepted alerts; required (or via the environment)")
    r.add_argument("--dead-letter-topic", default=_env("dead-letter-topic"),
                   help="topic for alerts that could not be filtered (default: <output>.deadletter)")
    r.add_argument("--group", default=_env("group"), help="consumer group (default: alertfilter-<name>)")
    r.add_argument("--batch-size", type=int, default=int(_env("batch-size", 200)),
                   help="messages per consume call and per commit (or transaction)")
    r.add_argument("--exactly-once", action="store_true", default=_env_bool("exactly-once"),
                   help="use Kafka transactions (read the output with isolation.level=read_committed); "
                        "default: at-least-once")
    r.add_argument("--transactional-id", default=_env("transactional-id"),
                   help="transactional.id for --exactly-once (default: alertfilter-<group>-<hostname>)")
    r.add_argument("--max-message-bytes", type=int, default=int(_env("max-message-bytes", 4 * 1024 * 1024)),
                   help="largest record produced, bytes; a larger accepted alert goes to the dead-letter topic")
    r.add_argument("--metrics-port", type=int, default=int(_env("metrics-port", 8080)),
                   help="port of /metrics, /healthz, /readyz (-1: none)")
    r.add_argument("--exit-when-idle", type=float, default=float(_env("exit-when-idle")) if _env("exit-when-idle") else None,
                   help="exit 0 once all partitions are at their end for this many seconds (default: never)")
    r.add_argument("--topic-wait", type=float, default=float(_env("topic-wait", 120)),
                   help="wait this long at start for the topics to exist, s")
    r.add_argument("--create-topics", action="store_true", default=_env_bool("create-topics"),
                   help="create missing output and dead-letter topics (local runs; in a cluster the operator does)")
    r.add_argument("--log-format", choices=("text", "json"), default=_env("log-format", "text"),
                   help="log lines as text or as one JSON object each")
    r.add_argument("--log-level", default=_env("log-level", "info"), help="debug, info, warning or error")
    r.add_argument("-X", action="append", metavar="KEY=VALUE",
                   help="extra librdkafka setting (repeatable; wins over ALERTFILTER_KAFKA_* variables)")
    _add_filter_rules(r, env=True)
    _add_decoding(r, env=True)
    r.set_defaults(func=cmd_run)

    c = add("check", "backtest a filter offline on Avro container files",
            "Backtest a filter offline on Avro container files, with the runner's rules (per-visit cap, errors, "
            "time budget), and print a summary (or one JSON object with --json). Exit code 0 when the backtest ran, "
            "even if alerts were in error; 2 for an error in the filter source.")
    c.add_argument("filter", help="the filter's Python source file")
    c.add_argument("--alerts", nargs="+", required=True, metavar="FILE", help="Avro container files, read in order")
    c.add_argument("--json", action="store_true",
                   help="print one JSON object: alerts, accepted, capped, rejected, errors, errors_by_reason, "
                        "accepted_ids, first_errors (on a source error: {\"error\": {line, column, message}})")
    _add_filter_rules(c)
    c.set_defaults(func=cmd_check)

    pr = add("produce", "send alerts of container files to a topic, one visit at a time",
             "Send the alerts of Avro container files to a topic in the Confluent wire format, one visit at a time "
             "at a cadence; prints one JSON object of totals.")
    pr.add_argument("files", nargs="+", metavar="FILE", help="Avro container files of alerts, sent in order")
    pr.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
    pr.add_argument("--topic", required=True, help="topic to send to (created if missing)")
    pr.add_argument("--schema-id", type=int, help="schema id in the header (default: from the schema name, vX_Y → X*100+Y)")
    pr.add_argument("--copies", type=int, default=1, help="send the files' alerts this many times")
    pr.add_argument("--alerts-per-visit", type=int, default=0,
                    help="regroup into visits of N alerts with new visit ids (0: keep the files' visits)")
    pr.add_argument("--first-visit", type=int, default=1, help="visit id of the first regrouped visit (with --alerts-per-visit)")
    pr.add_argument("--first-id", type=int, default=1, help="id of the first alert when renumbering")
    ids = pr.add_mutually_exclusive_group()
    ids.add_argument("--renumber", action="store_true",
                     help="give alerts new sequential ids, at --id-field and diaSource.diaSourceId "
                          "(default with --copies > 1)")
    ids.add_argument("--keep-ids", action="store_true", help="keep the original ids even with --copies")
    pr.add_argument("--cadence", type=float, default=39.0, help="seconds between visits (39 is the original sender's)")
    pr.add_argument("--visit-field", default="diaSource.visit",
                    help="dotted path of the visit id: read to group alerts, written with --alerts-per-visit")
    pr.add_argument("--id-field", default="diaSourceId", help="dotted path of the alert id written when renumbering")
    pr.add_argument("--partitions", type=int, default=1, help="partitions when the topic is created")
    pr.add_argument("--write-schema-dir", help="also write <schema id>.avsc files here (for --schema-dir of run and consume)")
    pr.add_argument("-X", action="append", metavar="KEY=VALUE", help="extra librdkafka setting (repeatable)")
    pr.set_defaults(func=cmd_produce)

    co = add("consume", "summarise, print (JSON lines) or count a topic's alerts",
             "Read a topic from its beginning until it is idle, and summarise, print (JSON lines) or count its "
             "alerts. Decoding needs --schema-dir or --schema-registry (or --schema, or --format container).")
    co.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
    co.add_argument("--topic", required=True, help="topic to read")
    co.add_argument("--mode", choices=("summary", "json", "count"), default="summary",
                    help="summary: totals per visit, dead-letter reasons, first ids; json: one line per alert, "
                         "cutout bytes replaced by their length; count: the number of messages")
    co.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this long without messages, s")
    co.add_argument("--max-messages", type=int, help="stop after this many messages (default: all)")
    co.add_argument("--visit-field", default="diaSource.visit", help="dotted path of the visit id, for the summary")
    co.add_argument("--id-field", default="diaSourceId", help="dotted path of the alert id, for the summary")
    co.add_argument("-X", action="append", metavar="KEY=VALUE", help="extra librdkafka setting (repeatable)")
    _add_decoding(co)
    co.set_defaults(func=cmd_consume)

    s = add("simulate", "write schema-valid simulated alerts (lsst.alert schema) to a container file",
            "Write schema-valid simulated alerts to an Avro container file, in the original 2018 lsst.alert schema "
            "(not Rubin's v10): the visit field is diaSource.ccdVisitId (visit * 1000 + detector), the alert id is "
            "the top-level alertId, fluxes are psFlux and the band is filterName. Check them with "
            "--visit-field diaSource.ccdVisitId --id-field alertId.")
    s.add_argument("--out", required=True, help="output Avro container file")
    s.add_argument("--visits", help="comma-separated visit ids (instead of --first-visit and --n-visits)")
    s.add_argument("--first-visit", type=int, default=1, help="first visit id")
    s.add_argument("--n-visits", type=int, default=1, help="number of consecutive visit ids")
    s.add_argument("--alerts-per-visit", type=int, default=100, help="alerts per visit")
    s.add_argument("--history", type=int, default=0, help="previous detections (prv_diaSources) per alert")
    s.add_argument("--cutout-bytes", type=int, default=34_560,
                   help="bytes of each of the two cutouts; Rubin's are 34,560, which makes about 70 KB per alert: "
                        "use 1000 for small files")
    s.add_argument("--first-id", type=int, default=1, help="alertId and diaSource.diaSourceId of the first alert")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same alerts")
    s.set_defaults(func=cmd_simulate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alertfilter`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
