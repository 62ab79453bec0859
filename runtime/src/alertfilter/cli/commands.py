"""The ``alertfilter`` commands: run, check, produce, consume, simulate (their arguments: :mod:`.args`).

Exit codes of ``run``: 0 stopped cleanly; 2 a usage or configuration error (including an error in
the filter source, an invalid Kafka setting, a metrics port in use); 3 the brokers cannot be
reached or a topic does not exist; 4 the schema source stayed unusable; 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from alertfilter.cap import StagedCap, VisitCap
from alertfilter.cli.args import echo, fail, kafka_env, key_values, resolve_run_args
from alertfilter.decoding import DecodingSpec, visit_reader
from alertfilter.limits import LimitGuard, Limits
from alertfilter.logs import setup_logging
from alertfilter.settings import RunnerSettings, hard_timeout

log = logging.getLogger("alertfilter")


def _read_filter_file(path: str) -> str:
    """The text of the filter file ``path``; exits 2 when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"alertfilter: cannot read filter {path}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        fail(f"alertfilter: filter {path} is not UTF-8 text: {exc}")


def _decoding(args: argparse.Namespace) -> DecodingSpec:
    """The decoding options of ``args``."""
    return DecodingSpec(
        args.format, args.schema_dir, args.schema_registry, args.schema, args.reader_schema, args.decoder
    )


def visit_cap(args: argparse.Namespace) -> int | None:
    """The cap N, or None for no cap (``--no-visit-cap`` or ``--max-alerts-per-visit 0``)."""
    if args.no_visit_cap or args.max_alerts_per_visit == 0:
        return None
    cap: int = args.max_alerts_per_visit
    return cap


def run_limits(args: argparse.Namespace) -> Limits:
    """The limits of resolved ``run`` arguments (``--max-accepted-per-day`` ...; ``spec.limits``)."""
    return Limits(args.max_accepted_per_day, args.max_bytes_per_day, args.max_match_rate, args.match_rate_window)


def runner_settings(args: argparse.Namespace, name: str, hard: float, kafka_config: dict[str, str]) -> RunnerSettings:
    """The runner's settings from resolved ``run`` arguments, for the filter ``name`` with the hard
    limit ``hard`` (s) and the librdkafka settings ``kafka_config``; not yet validated."""
    return RunnerSettings(
        bootstrap_servers=args.bootstrap_servers,
        input_topic=args.input,
        output_topic=args.output,
        dead_letter_topic=args.dead_letter_topic or f"{args.output}.deadletter",
        group_id=args.group or f"alertfilter-{name}",
        batch_size=args.batch_size,
        exactly_once=args.exactly_once,
        transactional_id=args.transactional_id,
        max_message_bytes=args.max_message_bytes,
        metrics_port=args.metrics_port if args.metrics_port >= 0 else None,
        exit_when_idle_s=args.exit_when_idle,
        hard_timeout_s=hard,
        liveness_window_s=args.liveness_window,
        schema_retries=args.schema_retries,
        topic_wait_s=args.topic_wait,
        kafka_config=kafka_config,
        start_from=args.start_from,
        replay_from=args.replay_from,
        replay_id=args.replay_id,
        full_topic=args.full_topic or None,
        candidates_topic=args.candidates_topic,
        cap_stage=bool(args.cap_stage) and visit_cap(args) is not None,  # no cap: nothing to stage
    )


def cmd_run(args: argparse.Namespace) -> int:
    """``alertfilter run``; returns the exit code (see the module's docstring)."""
    import threading

    from confluent_kafka import KafkaException

    from alertfilter.api import source_sha256
    from alertfilter.caphandover import cap_stage
    from alertfilter.clients import BrokersUnreachable, ClientEvents, StartupError, TopicsMissing, make_clients
    from alertfilter.filterspec import FilterLoadError, FilterProcessError, FilterSpec
    from alertfilter.metrics import RunnerMetrics
    from alertfilter.runner import Runner
    from alertfilter.runstatus import RunnerStatus
    from alertfilter.schemas import SchemaSourceError
    from alertfilter.supervisor import FilterProcess

    prog = "alertfilter run"
    resolve_run_args(args)
    setup_logging(args.log_format, args.log_level)
    if not args.filter:
        fail(f"{prog}: --filter (or ALERTFILTER_FILTER) is required")
    for name in ("bootstrap_servers", "input", "output"):
        if not getattr(args, name):
            fail(f"{prog}: --{name.replace('_', '-')} (or ALERTFILTER_{name.upper()}) is required")
    hard = hard_timeout(args.filter_timeout, args.filter_hard_timeout)
    kafka_config = {**kafka_env(), **key_values(args.X)}
    source = _read_filter_file(args.filter)
    decoding = _decoding(args)
    try:
        decoding.build()  # the options are checked here; the filter process builds its own decoder
    except (ValueError, OSError, ImportError) as exc:
        fail(f"{prog}: {exc}")
    spec = FilterSpec(
        source,
        args.entrypoint,
        decoding,
        args.visit_field,
        args.id_field,
        args.filter_timeout,
        args.fields,
        args.filter_memory_limit,
        args.log_format,
        args.log_level,
    )
    filters = FilterProcess(spec, hard)
    try:
        ready = filters.start()
    except FilterLoadError as exc:
        if not exc.line:
            fail(f"{prog}: {exc.message}")
        echo(f"{args.filter}:{exc.line}:{exc.column}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except FilterProcessError as exc:
        fail(f"{prog}: {exc}")
    try:
        name = args.name or ready.name
        settings = runner_settings(args, name, hard, kafka_config)
        try:
            settings.validate(args.filter_timeout)
            metrics, stop, status = RunnerMetrics(), threading.Event(), RunnerStatus()
            clients = make_clients(settings, ClientEvents(metrics, stop, status))
        except (ValueError, StartupError) as exc:
            fail(f"{prog}: {exc}")
        cap = (StagedCap if settings.cap_stage else VisitCap)(visit_cap(args))
        visit_of = visit_reader(decoding, args.visit_field)  # read for accepted alerts only: they are few
        limits = LimitGuard(run_limits(args))
        runner = Runner(
            settings, clients, filters, cap, name, source_sha256(source), metrics, stop, visit_of, status, limits
        )
        if args.create_topics:
            from alertfilter.candidates import CANDIDATES_PARTITIONS
            from alertfilter.kafkautil import ensure_topics

            try:
                ensure_topics(
                    settings.bootstrap_servers,
                    {settings.output_topic: 1, settings.dead_letter_topic: 1}
                    | ({settings.candidates_topic: CANDIDATES_PARTITIONS} if settings.candidates_topic else {}),
                    settings.kafka_config,
                )
            except KafkaException as exc:
                log.error("cannot create the output and dead-letter topics on %s: %s", settings.bootstrap_servers, exc)
                return 3
        log.info(
            "decoding %s",
            "fields " + ", ".join(ready.fields) + " (projected)"
            if ready.fields is not None and ready.projected
            else "every field",
        )
        log.info(
            "filter %s (sha256 %s) %s -> %s, dead letters -> %s, group %s, %s; hard limit %s",
            name,
            source_sha256(source)[:12],
            settings.input_topic,
            settings.output_topic,
            settings.dead_letter_topic,
            settings.group_id,
            "exactly-once" if settings.exactly_once else "at-least-once",
            f"{hard:g} s" if hard else "none",
        )
        try:
            with cap_stage(runner, stop):
                return runner.run()
        except (StartupError, TopicsMissing, BrokersUnreachable) as exc:
            log.error("%s", exc)
            return 2 if isinstance(exc, StartupError) else 3  # a setting; the cluster (see the docstring)
        except SchemaSourceError as exc:
            log.error("the schema source cannot be used: %s", exc)
            return 4
        except (FilterLoadError, FilterProcessError) as exc:
            log.error("a new filter process could not start: %s", exc)
            return 2
    finally:
        filters.close()


def cmd_check(args: argparse.Namespace) -> int:
    """``alertfilter check``: 0 when every file was read, 1 for a file truncated or not Avro (the
    counts before it are printed), 2 for a source error, a missing alerts file or a filter process
    that cannot start (nothing is counted then)."""
    from alertfilter.cli.report import resolve_fields, schema_source, write_check_report
    from alertfilter.filterspec import FilterLoadError, FilterProcessError
    from alertfilter.imports import import_warnings_of
    from alertfilter.tools import AlertFileError, check, jsonable, missing_files

    source = _read_filter_file(args.filter)
    missing = missing_files(args.alerts)
    if missing:  # said before any alert is counted, rather than after the counts of the files before it
        fail(f"alertfilter check: cannot read alerts: no such file: {', '.join(missing)}")
    not_provided = import_warnings_of(source, local=getattr(args, "modules", "runner") == "local")
    for ref, message in not_provided:
        echo(f"{args.filter}:{ref.line}:{ref.column}: warning: {message}", file=sys.stderr)
    import_warnings = [
        {"line": ref.line, "column": ref.column, "module": ref.top, "message": message} for ref, message in not_provided
    ]
    schemas = schema_source(args, "alertfilter check")
    resolve_fields(args, args.alerts, schemas)  # --visit-field, --id-field: the survey's unless given
    file_error: AlertFileError | None = None
    try:
        res = check(
            source,
            args.alerts,
            args.entrypoint,
            visit_cap(args),
            args.visit_field,
            args.id_field,
            args.filter_timeout,
            schemas=schemas,
        )
    except FilterLoadError as exc:
        if not exc.line:
            fail(f"alertfilter check: the filter cannot be loaded: {exc.message}")
        echo(f"{args.filter}:{exc.line}:{exc.column}: {exc.message}", file=sys.stderr)
        if args.json:
            error = {"error": {"line": exc.line, "column": exc.column, "message": exc.message}}
            echo(json.dumps({**error, "import_warnings": import_warnings} if import_warnings else error), flush=True)
        return 2
    except FilterProcessError as exc:
        fail(f"alertfilter check: {exc}")
    except AlertFileError as exc:
        file_error, res = exc, exc.result
    except (OSError, ValueError) as exc:
        fail(f"alertfilter check: cannot read alerts: {exc}")
    if args.json:
        out = jsonable(res.as_dict())
        if import_warnings:
            out["import_warnings"] = import_warnings
        if file_error is not None:
            out["file_error"] = str(file_error)
        echo(json.dumps(out))
    else:
        echo(
            f"{res.alerts} alerts: {res.accepted} accepted, {res.capped} capped, {res.rejected} rejected, "
            f"{res.errors} errors"
        )
        for e in res.first_errors[:5]:
            echo(
                f"  error at {e['file']}#{e['index']} (alert {_show_id(e['alert_id'])}): {e['reason']}: {e['message']}"
            )
        if res.accepted_ids:
            echo(
                "accepted ids: "
                + ", ".join(map(_show_id, res.accepted_ids[:20]))
                + (" ..." if res.accepted > 20 else "")
            )
        for line in check_warnings(res, args.visit_field, args.id_field):
            echo(line)
    if file_error is not None:
        echo(f"alertfilter check: {file_error}", file=sys.stderr)
        return 1
    return write_check_report(args, res, schemas) if args.html else 0


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
            lines.append(f"  the alerts lack the visit field {visit_field}: set {_survey_fields('visit')}")
        if "invalid-visit-field" in res.errors_by_reason:
            lines.append(
                f"  the visit field {visit_field} does not hold an integer or a string in some alerts, so the "
                "per-visit cap cannot count them: point --visit-field at the visit id"
            )
    if res.accepted_ids and all(i is None for i in res.accepted_ids):
        lines.append(f"note: the accepted alerts have no id at {id_field}: set {_survey_fields('id')}")
    return lines


def _survey_fields(option: str) -> str:
    """``--OPTION-field`` with each survey's value, and where the default comes from (for hints)."""
    from alertfilter.surveys import survey_of

    values = []
    for label, schema in (("Rubin", "lsst.v10_0.alert"), ("ZTF", "ztf.alert"), ("simulated lsst.alert", "lsst.alert")):
        survey = survey_of(schema)
        assert survey is not None
        values.append(f"{label}: --{option}-field {survey.visit_field if option == 'visit' else survey.id_field}")
    return (
        f"--{option}-field ({'; '.join(values)}); its default follows the first alert's schema, so files of "
        "several surveys need a check each"
    )


def cmd_produce(args: argparse.Namespace) -> int:
    from alertfilter.tools import produce

    res = produce(
        args.bootstrap_servers,
        args.topic,
        args.files,
        args.schema_id,
        args.copies,
        args.alerts_per_visit,
        args.cadence,
        args.visit_field,
        args.id_field,
        args.first_visit,
        args.first_id,
        True if args.renumber else (False if args.keep_ids else None),
        args.partitions,
        args.write_schema_dir,
        kafka_config=key_values(args.X),
    )
    echo(
        json.dumps(
            {
                "alerts": res.alerts,
                "visits": res.visits,
                "bytes": res.bytes,
                "seconds": round(res.seconds, 3),
                "schema_ids": res.schema_ids,
            }
        )
    )
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from alertfilter.schemas import SchemaSourceError
    from alertfilter.tools import consume

    decoder = None
    if args.mode != "count" and (args.schema_dir or args.schema_registry or args.schema or args.format == "container"):
        try:
            decoder = _decoding(args).build()
        except (ValueError, OSError, ImportError) as exc:
            fail(f"alertfilter consume: {exc}")
    try:
        consume(
            args.bootstrap_servers,
            args.topic,
            decoder,
            args.mode,
            args.idle_timeout,
            args.max_messages,
            args.visit_field,
            args.id_field,
            kafka_config=key_values(args.X),
        )
    except SchemaSourceError as exc:
        fail(f"alertfilter consume: the schema source cannot be used: {exc}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from alertfilter.simulate import simulate, write_container

    if args.visits:
        visits = [int(v) for v in args.visits.split(",") if v]
    else:
        visits = list(range(args.first_visit, args.first_visit + args.n_visits))
    n = write_container(
        args.out, simulate(visits, args.alerts_per_visit, args.history, args.seed, args.cutout_bytes, args.first_id)
    )
    echo(json.dumps({"alerts": n, "visits": len(visits), "file": args.out}))
    return 0
