"""The ``alertfilter`` command line: help, --version, and what ``check`` tells its user."""

import json

import pytest

import alertfilter
from alertfilter.cli import build_parser, main
from alertfilter.simulate import simulate, write_container

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


def run(capsys, *args):
    """``main(args)`` in process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


# --- check: errors are reported, not hidden by exit code 0 -------------------------------------------
def test_check_warns_when_every_alert_is_an_error(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return alert['diaSource']['psfFlux'] > 0\n")  # a v10 name
    code, out, _ = run(capsys, "check", f, "--alerts", sim, *SIM_ARGS)
    assert code == 0  # the backtest ran
    lines = out.splitlines()
    assert lines[0] == "30 alerts: 0 accepted, 0 capped, 0 rejected, 30 errors"
    assert "warning: all 30 alerts could not be filtered (reasons: filter-exception=30); see the first errors above" in lines
    assert lines.index(next(ln for ln in lines if ln.startswith("warning:"))) > 1  # below the first errors


def test_check_warns_with_the_count_of_some_errors_and_their_reasons(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    if alert['alertId'] % 3 == 0:\n        raise ValueError('x')\n"
                        "    return alert['alertId'] % 3 == 1 or 'yes'\n")
    code, out, _ = run(capsys, "check", f, "--alerts", sim, "--no-visit-cap", *SIM_ARGS)
    assert code == 0
    assert ("warning: 20 of 30 alerts could not be filtered (reasons: filter-exception=10, non-bool-result=10); "
            "see the first errors above") in out.splitlines()


def test_check_without_errors_prints_no_warning(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return alert['diaSource']['filterName'] == 'i'\n")
    code, out, _ = run(capsys, "check", f, "--alerts", sim, *SIM_ARGS)
    assert code == 0 and "warning" not in out and "note" not in out


def test_check_hints_at_the_simulator_fields(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return True\n")
    _, out, _ = run(capsys, "check", f, "--alerts", sim)
    assert "missing-visit-field=30" in out and "--visit-field diaSource.ccdVisitId" in out
    _, out, _ = run(capsys, "check", f, "--alerts", sim, "--visit-field", "diaSource.ccdVisitId")
    assert "warning" not in out and "--id-field alertId" in out  # ids would all be None


def test_check_json_has_no_warning_line(tmp_path, sim, capsys):
    f = write(tmp_path, "def f(alert):\n    return 1 / 0\n")
    code, out, _ = run(capsys, "check", f, "--alerts", sim, "--json", *SIM_ARGS)
    assert code == 0
    res = json.loads(out)
    assert set(res) == {"alerts", "accepted", "capped", "rejected", "errors", "errors_by_reason", "accepted_ids",
                        "first_errors"}
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
    assert code == 0 and out == f"alertfilter {alertfilter.__version__}\n" == "alertfilter 0.1.0\n"


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
    run_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["run"]
    required = {a.dest for a in run_parser._actions if "required (or via the environment)" in (a.help or "")}
    assert required == {"filter", "bootstrap_servers", "input", "output"}
    assert "(default: 200)" in flat and "(default: diaSource.visit)" in flat


def test_simulate_help_shows_defaults(capsys):
    code, out, _ = run(capsys, "simulate", "--help")
    flat = " ".join(out.split())
    assert code == 0 and "(default: 34560)" in flat and "(default: 100)" in flat and "(default: 0)" in flat


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"run", "check", "produce", "consume", "simulate"}
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
