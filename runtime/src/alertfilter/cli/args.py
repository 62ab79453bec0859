"""The ``alertfilter`` command line's arguments: the parser, and the environment of ``run``.

The options of ``run`` come from :data:`alertfilter.settings.OPTIONS` (those of ``check`` and
``consume`` that it shares too); each may also be set as its ``ALERTFILTER_<OPTION>`` variable,
which :func:`resolve_env` applies after parsing, with the same checks. An option on the command
line wins over its variable.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TextIO

from alertfilter import __version__
from alertfilter.convert import SettingError
from alertfilter.fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD
from alertfilter.settings import ENV_PREFIX, OPTIONS, Option

DESCRIPTION = (
    "alertfilter: run an astronomer's Python filter against a survey's alert stream (run), "
    "and the filter author's tools: backtest a filter offline (check), make test alerts (simulate), "
    "send alerts to a topic (produce) and read a topic back (consume)."
)

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
    "The filter runs in a process of its own, without the Kafka settings and credentials: a filter call past "
    "--filter-hard-timeout, or one that ends that process (an exit, a signal, a crash), is dead-lettered "
    "(filter-timeout, filter-crashed) and a new filter process takes the next alerts."
    "\n\n"
    "Exit codes: 0 stopped cleanly (SIGTERM, --exit-when-idle); 2 a usage or configuration error; 3 the brokers "
    "cannot be reached or a topic does not exist; 4 the schema source stayed unusable."
)


def echo(*parts: object, file: TextIO | None = None, flush: bool = False) -> None:
    """Write ``parts`` (space separated) and a newline to ``file`` (stdout): the commands' output."""
    out = sys.stdout if file is None else file
    out.write(" ".join(map(str, parts)) + "\n")
    if flush:
        out.flush()


def fail(message: str) -> NoReturn:
    """Print ``message`` on stderr and exit with code 2 (a usage or configuration error)."""
    echo(message, file=sys.stderr)
    raise SystemExit(2)


def _wrap(text: str) -> str:
    """Each blank-line separated paragraph of ``text`` wrapped on its own (the help is plain text)."""
    width = max(min(os.get_terminal_size(2).columns if sys.stderr.isatty() else 80, 100) - 2, 40)
    return "\n\n".join(textwrap.fill(par, width) for par in text.split("\n\n"))


def with_default(help_text: str, default: Any) -> str:
    """``help_text`` and ``(default: X)``, unless the default is None or False or the help names it."""
    if default is None or default is False or "default" in help_text:
        return help_text
    return f"{help_text} (default: {default})"


class EnvDefault:
    """The default of an option of ``run`` that its environment variable may set: after parsing, an
    attribute still holding one was not on the command line (see :func:`resolve_env`)."""

    def __init__(self, option: Option) -> None:
        self.option = option

    def __repr__(self) -> str:
        return repr(self.option.default)


def _type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a settings converter (its message shown as ``argument --x: ...``)."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except SettingError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def add_options(p: argparse.ArgumentParser, options: Sequence[Option], env: bool) -> None:
    """Add ``options`` to ``p``; with ``env``, their defaults are :class:`EnvDefault`."""
    groups: dict[str, Any] = {}
    for opt in options:
        target: Any = p
        if opt.group:
            if opt.group not in groups:
                groups[opt.group] = p.add_mutually_exclusive_group()
            target = groups[opt.group]
        kw: dict[str, Any] = {
            "default": EnvDefault(opt) if env else opt.default,
            "help": with_default(opt.help, opt.default),
        }
        if opt.flag:
            kw["action"] = "store_true"
        else:
            if opt.convert is not None:
                kw["type"] = _type(opt.convert)
            if opt.choices is not None:
                kw["choices"] = opt.choices
        target.add_argument(f"--{opt.name}", **kw)


def resolve_env(
    args: argparse.Namespace, prog: str, environ: Mapping[str, str] | None = None, options: Sequence[Option] = OPTIONS
) -> dict[str, str]:
    """Replace every :class:`EnvDefault` left in ``args`` (the option was not on the command line)
    by its variable's value, checked like a command-line value, or the built-in default.

    Returns:
        Where each option's value came from: ``{dest: "cli" | "env" | "default"}``.

    Raises:
        SystemExit: (code 2) a variable with a value the option refuses, naming the variable.
    """
    env = os.environ if environ is None else environ
    origin: dict[str, str] = {}
    for opt in options:
        current = getattr(args, opt.dest, None)
        if not isinstance(current, EnvDefault):
            origin[opt.dest] = "cli"
            continue
        raw = env.get(opt.var)
        if raw is None or raw == "":
            setattr(args, opt.dest, opt.default)
            origin[opt.dest] = "default"
            continue
        try:
            setattr(args, opt.dest, opt.parse(raw))
        except SettingError as exc:
            fail(f"{prog}: {opt.var}={raw!r}: {exc}")
        origin[opt.dest] = "env"
    return origin


def resolve_run_args(args: argparse.Namespace) -> None:
    """Complete parsed ``run`` arguments from the environment (:func:`resolve_env`); the command line
    wins: ``--max-alerts-per-visit N`` overrides ``ALERTFILTER_NO_VISIT_CAP``.

    Raises:
        SystemExit: (code 2) a variable with a bad value, or both cap variables set.
    """
    prog = "alertfilter run"
    origin = resolve_env(args, prog)
    if args.no_visit_cap and origin.get("no_visit_cap") == "env":
        if origin.get("max_alerts_per_visit") == "cli":
            args.no_visit_cap = False  # the command line wins over the environment
        elif origin.get("max_alerts_per_visit") == "env":
            fail(f"{prog}: ALERTFILTER_NO_VISIT_CAP and ALERTFILTER_MAX_ALERTS_PER_VISIT are both set; set one")


def kafka_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings from ``ALERTFILTER_KAFKA_<KEY>`` variables: ``ALERTFILTER_KAFKA_SASL_USERNAME``
    becomes ``sasl.username`` (lower case, ``_`` → ``.``). ``ALERTFILTER_KAFKA_CONFIG`` holds
    ``key=value;key=value`` pairs.

    Raises:
        SystemExit: (code 2) ``ALERTFILTER_KAFKA_CONFIG`` is not ``key=value`` pairs.
    """
    env = dict(os.environ if environ is None else environ)
    prefix = ENV_PREFIX + "KAFKA_"
    out: dict[str, str] = {}
    for item in (env.get(prefix + "CONFIG") or "").split(";"):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                fail(f"alertfilter: ALERTFILTER_KAFKA_CONFIG expects key=value pairs separated by ';', got {item!r}")
            out[key.strip()] = value.strip()
    for name, value in env.items():
        if name.startswith(prefix) and name != prefix + "CONFIG":
            out[name[len(prefix) :].lower().replace("_", ".")] = value
    return out


def key_values(items: Sequence[str] | None) -> dict[str, str]:
    """``-X KEY=VALUE`` items as a dict.

    Raises:
        SystemExit: (code 2) an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"alertfilter: -X expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def build_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``alertfilter`` parser; ``commands`` maps each command name to its function (``args.func``)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="alertfilter",
        description=_wrap(DESCRIPTION),
        formatter_class=fmt,
        epilog="Run 'alertfilter COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help_text: str, description: str | None = None, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        desc = description or help_text[0].upper() + help_text[1:] + "."
        sp = sub.add_parser(
            name, help=help_text, description=_wrap(desc), epilog=_wrap(epilog) if epilog else None, formatter_class=fmt
        )
        sp.set_defaults(func=commands[name])
        return sp

    def option(sp: Any, *names: str, default: Any = None, **kw: Any) -> None:
        kw["help"] = with_default(kw["help"], default) if kw.get("action") != "store_true" else kw["help"]
        sp.add_argument(*names, default=default, **kw)

    r = add(
        "run",
        "run a filter against a Kafka topic (the filter-runner)",
        "Run a filter against a Kafka topic (the filter-runner): consume the alert stream, call the filter on "
        "each alert, write accepted alerts (at most N per visit) to the output topic and alerts that could not "
        "be filtered to the dead-letter topic. Every option can also be set as an environment variable "
        "ALERTFILTER_<OPTION> (see below).",
        RUN_EPILOG,
    )
    add_options(r, OPTIONS, env=True)
    r.add_argument(
        "-X",
        action="append",
        metavar="KEY=VALUE",
        help="extra librdkafka setting (repeatable; wins over ALERTFILTER_KAFKA_* variables)",
    )

    from alertfilter.cli.report import add_input_arguments, add_report_arguments

    c = add(
        "check",
        "backtest a filter offline on alert files",
        "Backtest a filter offline on alert files as Kafka holds them (Avro container files, files of one "
        "Confluent-wire-format message, directories of either), with the runner's rules (per-visit cap, errors, "
        "time budget), and print a summary (or one JSON object with --json). --visit-field and --id-field default "
        "to the survey's the alerts' schema names (Rubin v10/v11, ZTF, the simulated lsst.alert). Exit code 0 "
        "when the backtest ran, even if alerts were in error; 2 for an error in the filter source.",
    )
    c.add_argument("filter", help="the filter's Python source file")
    c.add_argument(
        "--alerts",
        nargs="+",
        required=True,
        metavar="FILE",
        help="alert files or directories, read in order (Avro container files, Confluent-wire messages)",
    )
    c.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: alerts, accepted, capped, rejected, errors, errors_by_reason, "
        'accepted_ids, first_errors (on a source error: {"error": {line, column, message}})',
    )
    add_options(c, [o for o in OPTIONS if "check" in o.commands], env=False)
    c.set_defaults(visit_field=None, id_field=None)  # unset: the survey's, from the alerts' schema
    for a in c._actions:
        if a.dest in ("visit_field", "id_field"):
            a.help = re.sub(r"\(default: [^)]*\)", "(default: the survey's, told by the alerts' schema)", a.help or "")
    add_input_arguments(c)
    c.add_argument(
        "--modules",
        choices=("runner", "local"),
        default="runner",
        help="which modules the filter may import, for the warnings on its imports: runner (default: those of the "
        "runner image, whose list ships with alertfilter) or local (those this Python can import: in a group's own "
        "image built FROM the runner image, for an AlertFilter with spec.image)",
    )
    c.add_argument(
        "--html", metavar="FILE", help="also write an HTML report of the accepted alerts (alertfilter report)"
    )
    c.add_argument("--max-report-alerts", type=int, default=200, help="with --html: draw at most this many alerts")

    rp = add(
        "report",
        "write an HTML page of alerts: cutouts, light curves, fluxes",
        "Write a self-contained HTML page (it opens offline) of alerts from files or a topic: per alert its ids, "
        "time, band, PSF flux and S/N, its science, template and difference cutouts (zscale, asinh stretch) and "
        "its light curve from its history. Needs the report extra: pip install 'alertfilter[report]'.",
    )
    add_report_arguments(rp)

    from alertfilter.cli.lean import LEAN_DESCRIPTION, add_lean_arguments

    add_lean_arguments(add("lean", "copy a pool's full stream to its lean topic, cutouts null", LEAN_DESCRIPTION))

    pr = add(
        "produce",
        "send alerts of container files to a topic, one visit at a time",
        "Send the alerts of Avro container files to a topic in the Confluent wire format, one visit at a time "
        "at a cadence; prints one JSON object of totals.",
    )
    pr.add_argument("files", nargs="+", metavar="FILE", help="Avro container files of alerts, sent in order")
    pr.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
    pr.add_argument("--topic", required=True, help="topic to send to (created if missing)")
    option(pr, "--schema-id", type=int, help="schema id in the header (default: from the schema name, vX_Y → X*100+Y)")
    option(pr, "--copies", type=int, default=1, help="send the files' alerts this many times")
    option(
        pr,
        "--alerts-per-visit",
        type=int,
        default=0,
        help="regroup into visits of N alerts with new visit ids (0: keep the files' visits)",
    )
    option(
        pr, "--first-visit", type=int, default=1, help="visit id of the first regrouped visit (with --alerts-per-visit)"
    )
    option(pr, "--first-id", type=int, default=1, help="id of the first alert when renumbering")
    ids = pr.add_mutually_exclusive_group()
    ids.add_argument(
        "--renumber",
        action="store_true",
        help="give alerts new sequential ids, at --id-field and diaSource.diaSourceId (default with --copies > 1)",
    )
    ids.add_argument("--keep-ids", action="store_true", help="keep the original ids even with --copies")
    option(pr, "--cadence", type=float, default=39.0, help="seconds between visits (39 is the original sender's)")
    option(
        pr,
        "--visit-field",
        default=DEFAULT_VISIT_FIELD,
        help="dotted path of the visit id: read to group alerts, written with --alerts-per-visit",
    )
    option(pr, "--id-field", default=DEFAULT_ID_FIELD, help="dotted path of the alert id written when renumbering")
    option(pr, "--partitions", type=int, default=1, help="partitions when the topic is created")
    option(
        pr, "--write-schema-dir", help="also write <schema id>.avsc files here (for --schema-dir of run and consume)"
    )
    pr.add_argument("-X", action="append", metavar="KEY=VALUE", help="extra librdkafka setting (repeatable)")

    co = add(
        "consume",
        "summarise, print (JSON lines) or count a topic's alerts",
        "Read a topic from its beginning until it is idle, and summarise, print (JSON lines) or count its "
        "alerts. Decoding needs --schema-dir or --schema-registry (or --schema, or --format container).",
    )
    co.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]")
    co.add_argument("--topic", required=True, help="topic to read")
    option(
        co,
        "--mode",
        choices=("summary", "json", "count"),
        default="summary",
        help="summary: totals per visit, dead-letter reasons, first ids; json: one line per alert, "
        "cutout bytes replaced by their length; count: the number of messages",
    )
    option(co, "--idle-timeout", type=float, default=5.0, help="stop after this long without messages, s")
    option(co, "--max-messages", type=int, help="stop after this many messages (default: all)")
    option(co, "--visit-field", default=DEFAULT_VISIT_FIELD, help="dotted path of the visit id, for the summary")
    option(co, "--id-field", default=DEFAULT_ID_FIELD, help="dotted path of the alert id, for the summary")
    co.add_argument("-X", action="append", metavar="KEY=VALUE", help="extra librdkafka setting (repeatable)")
    add_options(co, [o for o in OPTIONS if "consume" in o.commands], env=False)

    s = add(
        "simulate",
        "write schema-valid simulated alerts (lsst.alert schema) to a container file",
        "Write schema-valid simulated alerts to an Avro container file, in the original 2018 lsst.alert schema "
        "(not Rubin's v10): the visit field is diaSource.ccdVisitId (visit * 1000 + detector), the alert id is "
        "the top-level alertId, fluxes are psFlux and the band is filterName. Check them with "
        "--visit-field diaSource.ccdVisitId --id-field alertId.",
    )
    s.add_argument("--out", required=True, help="output Avro container file")
    option(s, "--visits", help="comma-separated visit ids (instead of --first-visit and --n-visits)")
    option(s, "--first-visit", type=int, default=1, help="first visit id")
    option(s, "--n-visits", type=int, default=1, help="number of consecutive visit ids")
    option(s, "--alerts-per-visit", type=int, default=100, help="alerts per visit")
    option(s, "--history", type=int, default=0, help="previous detections (prv_diaSources) per alert")
    option(
        s,
        "--cutout-bytes",
        type=int,
        default=34_560,
        help="bytes of each of the two cutouts; Rubin's are 34,560, which makes about 70 KB per alert: "
        "use 1000 for small files",
    )
    option(s, "--first-id", type=int, default=1, help="alertId and diaSource.diaSourceId of the first alert")
    option(s, "--seed", type=int, default=0, help="random seed; the same seed gives the same alerts")
    return p
