"""The ``alertfilter`` command line: run, check, produce, consume, simulate.

Every option of ``run`` can also come from an environment variable ``ALERTFILTER_<OPTION>``
(upper case, dashes as underscores), which is how the operator configures runner pods. An option
given on the command line wins over its variable; a variable with a value the option refuses is an
error naming the variable (only for ``run``, the command that reads them).

Exit codes of ``run``: 0 stopped cleanly; 2 a usage or configuration error (including an error in
the filter source, an invalid Kafka setting, a metrics port in use); 3 the brokers cannot be
reached or a topic does not exist; 4 the schema source stayed unusable; 70 the watchdog ended a
message past the hard limit; 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from . import __version__
from .api import FilterSourceError, LoadedFilter, load_filter
from .cap import DEFAULT_MAX_ALERTS_PER_VISIT, VisitCap
from .codecs import BACKENDS, FORMATS, Decoder
from .fields import parse_path
from .logs import JsonFormatter, setup_logging
from .decoding import DecodingSpec
from .settings import hard_timeout

log = logging.getLogger("alertfilter")

__all__ = ["JsonFormatter", "build_parser", "check_warnings", "kafka_env", "main"]

DESCRIPTION = ("alertfilter: run an astronomer's Python filter against a survey's alert stream (run), "
               "and the filter author's tools: backtest a filter offline (check), make test alerts (simulate), "
               "send alerts to a topic (produce) and read a topic back (consume).")

RUN_EPILOG = (
    "Environment: every option of run except -X can also be set as an environment variable "
    "ALERTFILTER_<OPTION> (upper case, dashes as underscores): --bootstrap-servers is "
    "ALERTFILTER_BOOTSTRAP_SERVERS, --max-alerts-per-visit is ALERTFILTER_MAX_ALERTS_PER_VISIT; flags take "
    "1, true, yes or on (0, false, no or off to unset). An option given on the command line wins over its "
    "variable; an empty variable counts as unset."
    "\n\n"
    "ALERTFILTER_KAFKA_<KEY> variables become librdkafka settings (lower case, underscores as dots): "
    "ALERTFILTER_KAFKA_SASL_USERNAME=alice is sasl.username=alice. ALERTFILTER_KAFKA_CONFIG holds "
    "key=value;key=value pairs. -X KEY=VALUE wins over both."
    "\n\n"
    "Exit codes: 0 stopped cleanly (SIGTERM, --exit-when-idle); 2 a usage or configuration error; 3 the brokers "
    "cannot be reached or a topic does not exist; 4 the schema source stayed unusable; 70 a message outlived "
    "--filter-hard-timeout (it was dead-lettered; restart the runner to go on past it).")


def _fail(message: str) -> NoReturn:
    """Print ``message`` on stderr and exit with code 2 (a usage or configuration error)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


class EnvDefault:
    """The default of an option of ``run`` that an environment variable may set.

    Shown in ``--help`` as the built-in default; replaced after parsing (see :func:`resolve_env`) by
    the variable's value, converted like a command-line value, or else by the built-in default.
    """

    def __init__(self, var: str, plain: Any) -> None:
        self.var = var
        self.plain = plain

    def __str__(self) -> str:
        return str(self.plain)

    def __repr__(self) -> str:
        return repr(self.plain)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or False or its help already says it; wraps each
    paragraph (blank-line separated) of a description or epilog on its own."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default.plain if isinstance(action.default, EnvDefault) else action.default
        if default is None or default is False or "default" in help_text:
            return help_text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(HelpFormatter, self)._fill_text(par, width, indent) for par in text.split("\n\n"))


def _env_name(name: str) -> str:
    return "ALERTFILTER_" + name.upper().replace("-", "_")


# --- value checks (argparse types): each raises ArgumentTypeError with what is wrong -------------
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` → True, ``0/false/no/off`` → False (any case).

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected 1, true, yes or on (or 0, false, no, off), got {text!r}")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""
    def convert(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value
    convert.__name__ = "integer"
    return convert


def seconds(allow_zero: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, >= 0 (> 0 when ``allow_zero`` is False)."""
    def convert(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be a finite number of seconds {'>= 0' if allow_zero else '> 0'}, "
                                             f"got {text!r}")
        return value
    convert.__name__ = "seconds"
    return convert


def field_path(text: str) -> str:
    """An argparse type: a dotted field path such as ``diaSource.visit``."""
    try:
        parse_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def resolve_env(parser: argparse.ArgumentParser, args: argparse.Namespace, prog: str) -> dict[str, str]:
    """Replace every :class:`EnvDefault` left in ``args`` (the option was not on the command line)
    by its variable's value, checked like a command-line value, or the built-in default.

    Returns:
        Where each such option's value came from: ``{dest: "cli" | "env" | "default"}``.

    Raises:
        SystemExit: (code 2) a variable with a value the option refuses, naming the variable.
    """
    origin: dict[str, str] = {}
    for action in parser._actions:
        default = action.default
        if not isinstance(default, EnvDefault):
            continue
        if getattr(args, action.dest, None) is not default:
            origin[action.dest] = "cli"
            continue
        raw = os.environ.get(default.var)
        if raw is None or raw == "":
            setattr(args, action.dest, default.plain)
            origin[action.dest] = "default"
            continue
        try:
            if isinstance(action, argparse._StoreTrueAction):
                value: Any = parse_bool(raw)
            elif action.type is not None:
                value = action.type(raw)
            else:
                value = raw
            if action.choices is not None and value not in action.choices:
                raise argparse.ArgumentTypeError(f"expected one of {', '.join(map(str, action.choices))}")
        except (argparse.ArgumentTypeError, ValueError) as exc:
            _fail(f"{prog}: {default.var}={raw!r}: {exc}")
        setattr(args, action.dest, value)
        origin[action.dest] = "env"
    return origin


def kafka_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings from ``ALERTFILTER_KAFKA_<KEY>`` variables: ``ALERTFILTER_KAFKA_SASL_USERNAME``
    becomes ``sasl.username`` (lower case, ``_`` → ``.``). ``ALERTFILTER_KAFKA_CONFIG`` holds
    ``key=value;key=value`` pairs.

    Raises:
        SystemExit: (code 2) ``ALERTFILTER_KAFKA_CONFIG`` is not ``key=value`` pairs.
    """
    environ = dict(os.environ if environ is None else environ)
    out: dict[str, str] = {}
    for item in (environ.get("ALERTFILTER_KAFKA_CONFIG") or "").split(";"):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                _fail(f"alertfilter: ALERTFILTER_KAFKA_CONFIG expects key=value pairs separated by ';', got {item!r}")
            out[key.strip()] = value.strip()
    for name, value in environ.items():
        if name.startswith("ALERTFILTER_KAFKA_") and name != "ALERTFILTER_KAFKA_CONFIG":
            out[name[len("ALERTFILTER_KAFKA_"):].lower().replace("_", ".")] = value
    return out


def _kv(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"alertfilter: -X expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _setup_logging(fmt: str, level: str) -> None:
    setup_logging(fmt, level)


def _add_decoding(p: argparse.ArgumentParser, env: bool = False) -> None:
    e = _envdefault if env else (lambda name, default=None: default)
    p.add_argument("--format", choices=FORMATS, default=e("format", "confluent"),
                   help="message format: confluent (Confluent wire format, how Rubin publishes), "
                        "schemaless (--schema) or container (an Avro container file per message)")
    p.add_argument("--schema-dir", default=e("schema-dir"),
                   help="directory of .avsc files: <id>.avsc, or Rubin's lsst.vX_Y.alert.avsc layout")
    p.add_argument("--schema-registry", default=e("schema-registry"), help="URL of a Confluent-compatible schema registry")
    p.add_argument("--schema", default=e("schema"), help="writer schema file, for --format schemaless")
    p.add_argument("--reader-schema", default=e("reader-schema"), help="optional reader schema file")
    p.add_argument("--decoder", choices=BACKENDS, default=e("decoder", "cavro"), help="Avro decoder")


def _envdefault(name: str, default: Any = None) -> EnvDefault:
    return EnvDefault(_env_name(name), default)


def _add_filter_rules(p: argparse.ArgumentParser, env: bool = False) -> None:
    e = _envdefault if env else (lambda name, default=None: default)
    p.add_argument("--entrypoint", default=e("entrypoint"), help="the class or function to use: needed when the source defines several classes deriving from "
                        "AlertFilter or, with no such class, several public functions")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--max-alerts-per-visit", type=int_in(0), default=e("max-alerts-per-visit", DEFAULT_MAX_ALERTS_PER_VISIT),
                     help="accept at most N alerts per visit (20 is the original design's figure; 0: no cap)")
    cap.add_argument("--no-visit-cap", action="store_true", default=e("no-visit-cap", False),
                     help="no per-visit cap")
    p.add_argument("--visit-field", type=field_path, default=e("visit-field", "diaSource.visit"),
                   help="dotted path of the visit id the cap counts by (its value must be an integer or a string)")
    p.add_argument("--id-field", type=field_path, default=e("id-field", "diaSourceId"),
                   help="dotted path of the alert id shown in outputs and logs")
    p.add_argument("--filter-timeout", type=seconds(), default=e("filter-timeout", 1.0),
                   help="per-alert time budget of the filter call, s; over it the alert is an error (0: none)")


def _load_filter_file(path: str, entrypoint: str | None, json_errors: bool = False) -> LoadedFilter:
    """Load the filter at ``path``; a source error exits 2 after printing ``PATH:LINE:COLUMN: message``
    on stderr and, with ``json_errors``, ``{"error": {"line", "column", "message"}}`` on stdout."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"alertfilter: cannot read filter {path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _fail(f"alertfilter: filter {path} is not UTF-8 text: {exc}")
    try:
        return load_filter(source, entrypoint)
    except FilterSourceError as exc:
        print(f"{path}:{exc.line}:{exc.column}: {exc.message}", file=sys.stderr)
        if json_errors:
            print(json.dumps({"error": exc.as_dict()}), flush=True)
        raise SystemExit(2) from None


def _read_filter_file(path: str) -> str:
    """The text of the filter file ``path``; exits 2 when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"alertfilter: cannot read filter {path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _fail(f"alertfilter: filter {path} is not UTF-8 text: {exc}")


def _decoding(args: argparse.Namespace) -> DecodingSpec:
    """The decoding options of ``args``."""
    return DecodingSpec(args.format, args.schema_dir, args.schema_registry, args.schema, args.reader_schema,
                        args.decoder)


def _cap(args: argparse.Namespace) -> int | None:
    """The cap N, or None for no cap (``--no-visit-cap`` or ``--max-alerts-per-visit 0``)."""
    if args.no_visit_cap or args.max_alerts_per_visit == 0:
        return None
    return args.max_alerts_per_visit


# --- subcommands ---------------------------------------------------------------------------------
def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices["run"]


def resolve_run_args(args: argparse.Namespace) -> None:
    """Complete parsed ``run`` arguments from the environment (:func:`resolve_env`); the command line
    wins: ``--max-alerts-per-visit N`` overrides ``ALERTFILTER_NO_VISIT_CAP``.

    Raises:
        SystemExit: (code 2) a variable with a bad value, or both cap variables set.
    """
    prog = "alertfilter run"
    origin = resolve_env(getattr(args, "run_parser", None) or _run_parser(), args, prog)
    if args.no_visit_cap and origin.get("no_visit_cap") == "env":
        if origin.get("max_alerts_per_visit") == "cli":
            args.no_visit_cap = False  # the command line wins over the environment
        elif origin.get("max_alerts_per_visit") == "env":
            _fail(f"{prog}: ALERTFILTER_NO_VISIT_CAP and ALERTFILTER_MAX_ALERTS_PER_VISIT are both set; set one")


def cmd_run(args: argparse.Namespace) -> int:
    """``alertfilter run``; returns the exit code (see the module's docstring)."""
    import threading

    from confluent_kafka import KafkaException

    from .api import source_sha256
    from .clients import ClientEvents, StartupError, make_clients
    from .metrics import RunnerMetrics
    from .runner import BrokersUnreachable, Runner, TopicsMissing
    from .schemas import SchemaSourceError
    from .settings import RunnerSettings
    from .supervisor import FilterLoadError, FilterProcess, FilterProcessError, FilterSpec

    prog = "alertfilter run"
    resolve_run_args(args)
    _setup_logging(args.log_format, args.log_level)
    if not args.filter:
        _fail(f"{prog}: --filter (or ALERTFILTER_FILTER) is required")
    for name in ("bootstrap_servers", "input", "output"):
        if not getattr(args, name):
            _fail(f"{prog}: --{name.replace('_', '-')} (or ALERTFILTER_{name.upper()}) is required")
    hard = hard_timeout(args.filter_timeout, args.filter_hard_timeout)
    kafka_config = {**kafka_env(), **_kv(args.X)}
    source = _read_filter_file(args.filter)
    decoding = _decoding(args)
    try:
        decoding.build()  # the options are checked here; the filter process builds its own decoder
    except (ValueError, OSError, ImportError) as exc:
        _fail(f"{prog}: {exc}")
    spec = FilterSpec(source, args.entrypoint, decoding, args.visit_field, args.id_field, args.filter_timeout,
                      args.fields, log_format=args.log_format, log_level=args.log_level)
    filters = FilterProcess(spec, hard)
    try:
        ready = filters.start()
    except FilterLoadError as exc:
        if not exc.line:
            _fail(f"{prog}: {exc.message}")
        print(f"{args.filter}:{exc.line}:{exc.column}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except FilterProcessError as exc:
        _fail(f"{prog}: {exc}")
    try:
        name = args.name or ready.name
        settings = RunnerSettings(
            bootstrap_servers=args.bootstrap_servers, input_topic=args.input, output_topic=args.output,
            dead_letter_topic=args.dead_letter_topic or f"{args.output}.deadletter",
            group_id=args.group or f"alertfilter-{name}", batch_size=args.batch_size, exactly_once=args.exactly_once,
            transactional_id=args.transactional_id, max_message_bytes=args.max_message_bytes,
            metrics_port=args.metrics_port if args.metrics_port >= 0 else None, exit_when_idle_s=args.exit_when_idle,
            hard_timeout_s=hard, liveness_window_s=args.liveness_window, schema_retries=args.schema_retries,
            topic_wait_s=args.topic_wait, kafka_config=kafka_config)
        try:
            settings.validate(args.filter_timeout)
            metrics, stop = RunnerMetrics(), threading.Event()
            clients = make_clients(settings, ClientEvents(metrics, stop))
        except (ValueError, StartupError) as exc:
            _fail(f"{prog}: {exc}")
        runner = Runner(settings, clients, filters, VisitCap(_cap(args)), name, source_sha256(source), metrics, stop)
        if args.create_topics:
            from .kafkautil import ensure_topics

            try:
                ensure_topics(settings.bootstrap_servers, {settings.output_topic: 1, settings.dead_letter_topic: 1},
                              settings.kafka_config)
            except KafkaException as exc:
                log.error("cannot create the output and dead-letter topics on %s: %s", settings.bootstrap_servers, exc)
                return 3
        log.info("decoding %s", "fields " + ", ".join(ready.fields) + " (projected)"
                 if ready.fields is not None and ready.projected else "every field")
        log.info("filter %s (sha256 %s) %s -> %s, dead letters -> %s, group %s, %s; hard limit %s", name,
                 source_sha256(source)[:12], settings.input_topic, settings.output_topic, settings.dead_letter_topic,
                 settings.group_id, "exactly-once" if settings.exactly_once else "at-least-once",
                 f"{hard:g} s" if hard else "none")
        try:
            return runner.run()
        except StartupError as exc:
            log.error("%s", exc)
            return 2
        except (TopicsMissing, BrokersUnreachable) as exc:
            log.error("%s", exc)
            return 3
        except SchemaSourceError as exc:
            log.error("the schema source cannot be used: %s", exc)
            return 4
        except (FilterLoadError, FilterProcessError) as exc:
            log.error("a new filter process could not start: %s", exc)
            return 2
    finally:
        filters.close()


def cmd_check(args: argparse.Namespace) -> int:
    from .tools import AlertFileError, check, jsonable

    flt = _load_filter_file(args.filter, args.entrypoint, json_errors=args.json)
    file_error: AlertFileError | None = None
    try:
        res = check(flt, args.alerts, _cap(args), args.visit_field, args.id_field, args.filter_timeout)
    except AlertFileError as exc:
        file_error, res = exc, exc.result
    except (OSError, ValueError) as exc:
        _fail(f"alertfilter check: cannot read alerts: {exc}")
    if args.json:
        out = jsonable(res.as_dict())
        if file_error is not None:
            out["file_error"] = str(file_error)
        print(json.dumps(out))
    else:
        print(f"{res.alerts} alerts: {res.accepted} accepted, {res.capped} capped, {res.rejected} rejected, "
              f"{res.errors} errors")
        for e in res.first_errors[:5]:
            print(f"  error at {e['file']}#{e['index']} (alert {_show_id(e['alert_id'])}): {e['reason']}: {e['message']}")
        if res.accepted_ids:
            print("accepted ids: " + ", ".join(map(_show_id, res.accepted_ids[:20])) + (" ..." if res.accepted > 20 else ""))
        for line in check_warnings(res, args.visit_field, args.id_field):
            print(line)
    if file_error is not None:
        print(f"alertfilter check: {file_error}", file=sys.stderr)
        return 1
    return 0


def _show_id(alert_id: Any) -> str:
    if isinstance(alert_id, (bytes, bytearray)):
        return f"<{len(alert_id)} bytes>"
    return str(alert_id)


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
        if "invalid-visit-field" in res.errors_by_reason:
            lines.append(f"  the visit field {visit_field} does not hold an integer or a string in some alerts, so the "
                         "per-visit cap cannot count them: point --visit-field at the visit id")
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

    from .schemas import SchemaSourceError

    decoder = None
    if args.mode != "count" and (args.schema_dir or args.schema_registry or args.schema or args.format == "container"):
        try:
            decoder = _decoding(args).build()
        except (ValueError, OSError, ImportError) as exc:
            _fail(f"alertfilter consume: {exc}")
    try:
        consume(args.bootstrap_servers, args.topic, decoder, args.mode, args.idle_timeout, args.max_messages,
                args.visit_field, args.id_field, kafka_config=_kv(args.X))
    except SchemaSourceError as exc:
        _fail(f"alertfilter consume: the schema source cannot be used: {exc}")
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
    e = _envdefault
    r.add_argument("--filter", default=e("filter"),
                   help="the filter's Python source file; required (or via the environment)")
    r.add_argument("--name", default=e("name"),
                   help="filter name for headers, logs and the default group (default: the class or function name)")
    r.add_argument("--bootstrap-servers", default=e("bootstrap-servers"),
                   help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]; required (or via the environment)")
    r.add_argument("--input", default=e("input"),
                   help="input topic (the full alert stream); required (or via the environment)")
    r.add_argument("--output", default=e("output"),
                   help="output topic for accepted alerts; required (or via the environment)")
    r.add_argument("--dead-letter-topic", default=e("dead-letter-topic"),
                   help="topic for alerts that could not be filtered (default: <output>.deadletter)")
    r.add_argument("--group", default=e("group"), help="consumer group (default: alertfilter-<name>)")
    r.add_argument("--batch-size", type=int_in(1, 100_000), default=e("batch-size", 200),
                   help="messages per consume call and per commit (or transaction), 1 to 100000")
    r.add_argument("--exactly-once", action="store_true", default=e("exactly-once", False),
                   help="use Kafka transactions (read the output with isolation.level=read_committed); "
                        "default: at-least-once")
    r.add_argument("--transactional-id", default=e("transactional-id"),
                   help="transactional.id for --exactly-once (default: alertfilter-<group>-<hostname>)")
    r.add_argument("--max-message-bytes", type=int_in(1024, 1_000_000_000), default=e("max-message-bytes", 4 * 1024 * 1024),
                   help="largest record produced, bytes (>= 1024); a larger accepted alert goes to the dead-letter topic, "
                        "without its value")
    r.add_argument("--metrics-port", type=int_in(-1, 65535), default=e("metrics-port", 8080),
                   help="port of /metrics, /healthz, /readyz (-1: none)")
    r.add_argument("--filter-hard-timeout", type=seconds(), default=e("filter-hard-timeout"),
                   help="hard limit of one alert's processing, s (default: max(10 x --filter-timeout, 10); 0: none): "
                        "past it, even when the filter defeats --filter-timeout, the alert is dead-lettered and the "
                        "runner exits with code 70 to restart past it")
    r.add_argument("--liveness-window", type=seconds(allow_zero=False), default=e("liveness-window"),
                   help="/healthz fails after this long without progress, s (default: max(60, 3 x the hard limit))")
    r.add_argument("--schema-retries", type=int_in(0, 100), default=e("schema-retries", 5),
                   help="while a schema cannot be had (a malformed schema file, an unreachable registry), retry "
                        "the batch this many times, waiting 1, 2, 4... up to 30 s, then exit with code 4; its "
                        "messages are neither dead-lettered nor committed meanwhile")
    r.add_argument("--exit-when-idle", type=seconds(), default=e("exit-when-idle"),
                   help="exit 0 once all partitions are at their end for this many seconds (default: never)")
    r.add_argument("--topic-wait", type=seconds(), default=e("topic-wait", 120.0),
                   help="wait this long at start for the brokers to answer and the topics to exist, s")
    r.add_argument("--create-topics", action="store_true", default=e("create-topics", False),
                   help="create missing output and dead-letter topics (local runs; in a cluster the operator does)")
    r.add_argument("--log-format", choices=("text", "json"), default=e("log-format", "text"),
                   help="log lines as text or as one JSON object each")
    r.add_argument("--log-level", choices=("debug", "info", "warning", "error"), type=str.lower,
                   default=e("log-level", "info"), help="debug, info, warning or error")
    r.add_argument("-X", action="append", metavar="KEY=VALUE",
                   help="extra librdkafka setting (repeatable; wins over ALERTFILTER_KAFKA_* variables)")
    _add_filter_rules(r, env=True)
    _add_decoding(r, env=True)
    r.add_argument("--fields", default=_envdefault("fields", "auto"),
                   help="top-level alert fields to decode: auto (the filter's `fields` declaration, else those its "
                        "source reads as alert['x'] / alert.get('x'), else all), all, or a comma-separated list; "
                        "decoding only what a filter reads is ~20x faster on long-history alerts")
    r.set_defaults(func=cmd_run, run_parser=r)

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
