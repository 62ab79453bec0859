"""The ``alertfilter`` command line: help, --version, and what ``check`` tells its user."""

import argparse
import importlib.metadata
import json
from typing import cast

import pytest

import alertfilter
from alertfilter.cli import build_parser
from alertfilter.simulate import simulate, write_container

from .cli_run import run

SIM_ARGS = ["--visit-field", "diaSource.ccdVisitId", "--id-field", "alertId"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """30 simulated alerts (original lsst.alert schema) with small cutouts."""
    path = tmp_path_factory.mktemp("sim") / "sim.avro"
    write_container(path, simulate([100, 101, 102], 10, cutout_bytes=64))
    return path


def write(tmp_path, src, name="f.py"):
    f = tmp_path / name
    f.write_text(src)
    return f


# --- check: errors are reported, not hidden by exit code 0 -------------------------------------------
def test_check_warns_when_every_alert_is_an_error(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return alert['diaSource']['psfFlux'] > 0\n")  # a v10 name
    code, out, _ = run(capsys, "check", f, "--alerts", sim, *SIM_ARGS)
    assert code == 0  # the backtest ran
    lines = out.splitlines()
    assert lines[0] == "30 alerts: 0 accepted, 0 capped, 0 rejected, 30 errors"
    assert (
        "warning: all 30 alerts could not be filtered (reasons: filter-exception=30); see the first errors above"
        in lines
    )
    assert lines.index(next(ln for ln in lines if ln.startswith("warning:"))) > 1  # below the first errors


def test_check_warns_with_the_count_of_some_errors_and_their_reasons(tmp_path, sim, capsys):
    f = write(
        tmp_path,
        "def f(alert):\n    if alert['alertId'] % 3 == 0:\n        raise ValueError('x')\n"
        "    return alert['alertId'] % 3 == 1 or 'yes'\n",
    )
    code, out, _ = run(capsys, "check", f, "--alerts", sim, "--no-visit-cap", *SIM_ARGS)
    assert code == 0
    assert (
        "warning: 20 of 30 alerts could not be filtered (reasons: filter-exception=10, non-bool-result=10); "
        "see the first errors above"
    ) in out.splitlines()


def test_check_without_errors_prints_no_warning(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return alert['diaSource']['filterName'] == 'i'\n")
    code, out, _ = run(capsys, "check", f, "--alerts", sim, *SIM_ARGS)
    assert code == 0 and "warning" not in out and "note" not in out


def test_check_takes_the_simulator_fields_from_the_schema(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return True\n")
    _, out, _ = run(capsys, "check", f, "--alerts", sim)  # lsst.alert: alertId, diaSource.ccdVisitId
    assert out.startswith("30 alerts: 30 accepted") and "accepted ids: 1, 2, 3" in out and "warning" not in out


def test_check_hints_at_the_simulator_fields_when_told_others(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return True\n")
    _, out, _ = run(capsys, "check", f, "--alerts", sim, "--visit-field", "diaSource.visit")
    assert "missing-visit-field=30" in out and "--visit-field diaSource.ccdVisitId" in out
    _, out, _ = run(capsys, "check", f, "--alerts", sim, "--visit-field", "diaSource.ccdVisitId", "--id-field", "x")
    assert "warning" not in out and "--id-field alertId" in out  # ids would all be None


def test_check_json_has_no_warning_line(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return 1 / 0\n")
    code, out, _ = run(capsys, "check", f, "--alerts", sim, "--json", *SIM_ARGS)
    assert code == 0
    res = json.loads(out)
    assert set(res) == {
        "alerts",
        "accepted",
        "capped",
        "rejected",
        "errors",
        "errors_by_reason",
        "accepted_ids",
        "first_errors",
    }
    assert res["errors"] == 30 and res["errors_by_reason"] == {"filter-exception": 30}


def test_check_json_prints_a_source_error_as_json(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return alert[\n", "bad.py")
    code, out, err = run(capsys, "check", f, "--alerts", sim, "--json")
    assert code == 2
    assert json.loads(out) == {"error": {"line": 2, "column": 17, "message": "syntax error: '[' was never closed"}}
    assert err.startswith(f"{f}:2:17: syntax error")


def test_check_text_prints_a_source_error_on_stderr_only(tmp_path, sim, capsys):
    f = write(tmp_path, "def a(x):\n    return True\ndef b(x):\n    return True\n", "two.py")
    code, out, err = run(capsys, "check", f, "--alerts", sim)
    assert code == 2 and out == ""
    assert err.startswith(f"{f}:3:1: several filters defined (a, b)")


# --- help and --version ----------------------------------------------------------------------------
def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    installed = importlib.metadata.version("alertfilter")  # what pip installed: the version a user has
    assert code == 0 and out == f"alertfilter {installed}\n" and alertfilter.__version__ == installed


def test_top_level_help_is_plain_text(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "``" not in out and "--version" in out
    for command in ("run", "check", "produce", "consume", "simulate"):
        assert command in out


def test_run_help_documents_the_environment(capsys, monkeypatch):
    for name in ("ALERTFILTER_FILTER", "ALERTFILTER_INPUT", "ALERTFILTER_OUTPUT", "ALERTFILTER_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    code, out, _ = run(capsys, "run", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "ALERTFILTER_<OPTION>" in flat and "ALERTFILTER_KAFKA_<KEY>" in flat
    assert "ALERTFILTER_KAFKA_SASL_USERNAME=alice is sasl.username=alice" in flat
    assert flat.count("required (or via the environment)") == 4
    subcommands = cast(
        dict[str, argparse.ArgumentParser], next(a for a in build_parser()._actions if a.dest == "command").choices
    )
    run_parser = subcommands["run"]
    required = {a.dest for a in run_parser._actions if "required (or via the environment)" in (a.help or "")}
    assert required == {"filter", "bootstrap_servers", "input", "output"}
    assert "(default: 200)" in flat and "(default: diaSource.visit)" in flat


def test_simulate_help_shows_defaults(capsys):
    code, out, _ = run(capsys, "simulate", "--help")
    flat = " ".join(out.split())
    assert code == 0 and "(default: 34560)" in flat and "(default: 100)" in flat and "(default: 0)" in flat


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    commands = cast(dict[str, argparse.ArgumentParser], next(a for a in parser._actions if a.dest == "command").choices)
    assert set(commands) == {"run", "check", "produce", "consume", "simulate", "report", "lean"}
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"


# --- run: bad numbers and paths are usage errors (exit 2), never tracebacks ---------------------------
RUN = ["run", "--bootstrap-servers", "127.0.0.1:1", "--input", "a", "--output", "b"]


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("ALERTFILTER_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--filter-timeout", "nan", "must be a finite number of seconds >= 0, got 'nan'"),
        ("--filter-timeout", "inf", "must be a finite number of seconds >= 0, got 'inf'"),
        ("--filter-timeout", "-1", "must be a finite number of seconds >= 0, got '-1'"),
        ("--filter-hard-timeout", "nan", "must be a finite number of seconds >= 0, got 'nan'"),
        ("--liveness-window", "0", "must be a finite number of seconds > 0"),
        ("--batch-size", "0", "must be between 1 and 100000, got 0"),
        ("--batch-size", "2000000", "must be between 1 and 100000, got 2000000"),
        ("--batch-size", "many", "expected an integer, got 'many'"),
        ("--max-message-bytes", "10", "must be between 1024 and 1000000000, got 10"),
        ("--metrics-port", "70000", "must be between -1 and 65535, got 70000"),
        ("--metrics-port", "-2", "must be between -1 and 65535, got -2"),
        ("--max-alerts-per-visit", "-1", "must be >= 0, got -1"),
        ("--visit-field", "a..b", "invalid field path 'a..b'"),
        ("--id-field", "", "invalid field path ''"),
    ],
)
def test_run_refuses_bad_values_with_a_usage_error(tmp_path, capsys, clean_env, option, value, words):
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, _, err = run(capsys, *RUN, "--filter", f, option, value)
    assert code == 2 and f"argument {option}: {words}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("option", "value"), [("--filter-timeout", "nan"), ("--visit-field", "a..b"), ("--max-alerts-per-visit", "-1")]
)
def test_check_refuses_bad_values_too(tmp_path, sim, capsys, option, value):
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, _, err = run(capsys, "check", f, "--alerts", sim, option, value)
    assert code == 2 and f"argument {option}" in err


# --- environment variables: checked like options, only for run, and the command line wins ------------
def test_bad_numeric_variable_breaks_neither_help_nor_other_commands(tmp_path, sim, capsys, clean_env):
    clean_env.setenv("ALERTFILTER_BATCH_SIZE", "abc")
    code, out, _ = run(capsys, "run", "--help")
    assert code == 0 and "--batch-size" in out
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, out, _ = run(capsys, "check", f, "--alerts", sim, *SIM_ARGS)
    assert code == 0 and out.startswith("30 alerts")
    code, _, err = run(capsys, *RUN, "--filter", f)
    assert code == 2 and err.strip() == "alertfilter run: ALERTFILTER_BATCH_SIZE='abc': expected an integer, got 'abc'"


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("ALERTFILTER_EXACTLY_ONCE", "maybe", "expected 1, true, yes or on (or 0, false, no, off), got 'maybe'"),
        ("ALERTFILTER_NO_VISIT_CAP", "2", "expected 1, true, yes or on"),
        ("ALERTFILTER_FILTER_TIMEOUT", "nan", "must be a finite number of seconds"),
        ("ALERTFILTER_METRICS_PORT", "http", "expected an integer"),
        ("ALERTFILTER_VISIT_FIELD", "diaSource.", "invalid field path"),
        ("ALERTFILTER_FORMAT", "json", "expected one of confluent, schemaless, container"),
    ],
)
def test_bad_variable_is_named(tmp_path, capsys, clean_env, var, value, words):
    clean_env.setenv(var, value)
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, _, err = run(capsys, *RUN, "--filter", f)
    assert code == 2 and err.startswith(f"alertfilter run: {var}={value!r}: ") and words in err


def _run_args(*argv):
    from alertfilter.cli import resolve_run_args

    args = build_parser().parse_args(["run", *argv])
    resolve_run_args(args)
    return args


def test_command_line_wins_over_the_environment(clean_env):
    from alertfilter.cli import visit_cap

    clean_env.setenv("ALERTFILTER_NO_VISIT_CAP", "1")
    assert visit_cap(_run_args()) is None
    assert visit_cap(_run_args("--max-alerts-per-visit", "3")) == 3
    clean_env.setenv("ALERTFILTER_BATCH_SIZE", "50")
    clean_env.setenv("ALERTFILTER_EXACTLY_ONCE", "TRUE")
    args = _run_args("--batch-size", "7")
    assert args.batch_size == 7 and args.exactly_once is True
    assert _run_args().batch_size == 50
    for off in ("0", "false", "No", "OFF", ""):
        clean_env.setenv("ALERTFILTER_EXACTLY_ONCE", off)
        assert _run_args().exactly_once is False


def test_both_cap_variables_set_is_an_error(clean_env, capsys):
    clean_env.setenv("ALERTFILTER_NO_VISIT_CAP", "yes")
    clean_env.setenv("ALERTFILTER_MAX_ALERTS_PER_VISIT", "3")
    with pytest.raises(SystemExit) as ei:
        _run_args()
    assert ei.value.code == 2 and "set one" in capsys.readouterr().err


def test_hard_timeout_and_liveness_defaults(clean_env):
    from alertfilter.cli import hard_timeout
    from alertfilter.settings import RunnerSettings

    assert hard_timeout(1.0, None) == 10.0 and hard_timeout(3.0, None) == 30.0 and hard_timeout(0, None) == 10.0
    assert hard_timeout(1.0, 0.0) == 0.0  # none
    cfg = RunnerSettings("b", "i", "o", "d", "g", hard_timeout_s=30.0)
    assert cfg.liveness_window() == 90.0
    assert RunnerSettings("b", "i", "o", "d", "g", hard_timeout_s=10.0).liveness_window() == 60.0
    assert RunnerSettings("b", "i", "o", "d", "g", liveness_window_s=5.0).liveness_window() == 5.0
    assert _run_args("--filter-hard-timeout", "12", "--liveness-window", "40").liveness_window == 40.0


# --- run: configuration problems found at start are one clear line, exit 2 (3 for Kafka) ------------
def _run_process(tmp_path, *extra, src="def f(alert):\n    return True\n", timeout=60):
    import os
    import subprocess
    import sys

    f = write(tmp_path, src)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "alertfilter",
            *RUN,
            "--filter",
            str(f),
            "--schema-dir",
            str(tmp_path),
            "--topic-wait",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _last_line(text):
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("%")][-1]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            ["-X", "no.such.setting=1"],
            'alertfilter run: invalid Kafka consumer setting: No such configuration property: "no.such.setting"',
        ),
        (
            ["-X", "socket.timeout.ms=abc"],
            'invalid Kafka consumer setting: Invalid value for configuration property "socket.timeout.ms"',
        ),
        (["-X", "novalue"], "alertfilter: -X expects key=value, got 'novalue'"),
        (
            ["--format", "schemaless", "--schema", "/no/such.avsc"],
            "alertfilter run: cannot read --schema /no/such.avsc: no such file",
        ),
        (["--format", "schemaless"], "the schemaless format needs the writer schema (--schema)"),
        (["--entrypoint", ""], "empty entrypoint"),
    ],
)
def test_startup_configuration_errors_are_one_line(tmp_path, extra, words):
    r = _run_process(tmp_path, "--metrics-port", "-1", *extra)
    assert r.returncode == 2, r.stderr
    assert words in _last_line(r.stderr) and "Traceback" not in r.stderr


def test_malformed_schema_file_for_schemaless_is_one_line(tmp_path):
    bad = write(tmp_path, '{"type": "record", "name": "x", "fields": [', "bad.avsc")
    r = _run_process(tmp_path, "--metrics-port", "-1", "--format", "schemaless", "--schema", str(bad))
    assert r.returncode == 2 and f"--schema {bad} is not a usable Avro schema" in _last_line(r.stderr)


def test_metrics_port_in_use_says_so(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run_process(tmp_path, "--metrics-port", str(port))
    assert r.returncode == 2 and f"port {port} is in use; pass --metrics-port" in _last_line(r.stderr)
    assert "Traceback" not in r.stderr


def test_unreachable_brokers_are_named_as_such(tmp_path):
    r = _run_process(tmp_path, "--metrics-port", "-1")
    assert r.returncode == 3
    line = _last_line(r.stderr)
    assert "cannot reach the Kafka brokers at 127.0.0.1:1" in line and "do not exist" not in line


# --- check: a truncated file still reports what was read; ids of any type ---------------------------
def test_check_reports_a_truncated_file_with_the_counts_so_far(tmp_path, sim, capsys):
    import fastavro

    from alertfilter.codecs import read_container

    schema, records = read_container(str(sim))
    whole = tmp_path / "blocks.avro"
    with open(whole, "wb") as fh:  # one record per block, as a long-running writer leaves them
        fastavro.writer(fh, fastavro.parse_schema(schema), records, sync_interval=1)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avro"
    cut.write_bytes(data[: len(data) * 2 // 3])
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, out, err = run(capsys, "check", f, "--alerts", cut, *SIM_ARGS, "--no-visit-cap")
    assert code == 1
    n = int(out.split()[0])
    assert 0 < n < 30 and out.startswith(f"{n} alerts: {n} accepted")
    assert f"alertfilter check: file {cut} is truncated or corrupt after {n} alerts: " in err
    code, out, err = run(capsys, "check", f, "--alerts", cut, *SIM_ARGS, "--no-visit-cap", "--json")
    res = json.loads(out)
    assert code == 1 and res["alerts"] == n and res["file_error"].startswith(f"file {cut} is truncated or corrupt")


def test_check_reports_a_file_that_is_not_avro(tmp_path, capsys):
    junk = write(tmp_path, "not avro at all", "junk.avro")
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, out, err = run(capsys, "check", f, "--alerts", junk)
    assert code == 1 and out.startswith("0 alerts") and f"file {junk} is not an Avro container file" in err


def test_check_json_shows_bytes_ids_as_their_length(tmp_path, capsys):
    import fastavro

    schema = {
        "type": "record",
        "name": "A",
        "fields": [
            {"name": "diaSourceId", "type": "bytes"},
            {
                "name": "diaSource",
                "type": {"type": "record", "name": "S", "fields": [{"name": "visit", "type": "long"}]},
            },
        ],
    }
    path = tmp_path / "b.avro"
    with open(path, "wb") as fh:
        fastavro.writer(
            fh, fastavro.parse_schema(schema), [{"diaSourceId": b"\x00\x01\x02", "diaSource": {"visit": 1}}]
        )
    f = write(tmp_path, "def f(alert):\n    return True\n")
    code, out, _ = run(capsys, "check", f, "--alerts", path, "--json")
    assert code == 0 and json.loads(out)["accepted_ids"] == [{"bytes": 3}]
    code, out, _ = run(capsys, "check", f, "--alerts", path)
    assert "accepted ids: <3 bytes>" in out
