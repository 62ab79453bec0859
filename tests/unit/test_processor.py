"""The per-alert decision and the offline backtest (``alertfilter check``), on bad input too."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alertfilter import load_filter
from alertfilter.cap import VisitCap
from alertfilter.codecs import Decoder, read_container
from alertfilter.processor import ACCEPTED, CAPPED, ERROR, REJECTED, AlertProcessor

ROOT = Path(__file__).resolve().parents[2]
BRIGHT = ROOT / "examples" / "filters" / "bright_significant.py"


def proc(src: str, cap=None, timeout=1.0, visit_field="diaSource.visit") -> AlertProcessor:
    return AlertProcessor(load_filter(src), Decoder("container"), VisitCap(cap), visit_field, "diaSourceId", timeout)


def alert(i, visit=1, **src):
    return {"diaSourceId": i, "diaSource": {"visit": visit, **src}}


def test_accept_reject_and_cap():
    p = proc("def f(a):\n    return a['diaSource']['x'] > 0\n", cap=2)
    kinds = [p.process_alert(alert(i, visit=i % 2, x=1 if i < 8 else -1)).kind for i in range(10)]
    assert kinds == [ACCEPTED] * 4 + [CAPPED] * 4 + [REJECTED] * 2


def test_filter_exception_is_an_error_with_its_message():
    oc = proc("def f(a):\n    return 1 / 0\n").process_alert(alert(42))
    assert (oc.kind, oc.reason, oc.alert_id, oc.visit) == (ERROR, "filter-exception", 42, 1)
    assert "ZeroDivisionError" in oc.message


def test_non_bool_result_is_an_error():
    oc = proc("def f(a):\n    return 'yes'\n").process_alert(alert(1))
    assert (oc.kind, oc.reason) == (ERROR, "non-bool-result") and "str" in oc.message


def test_missing_visit_field_is_an_error_not_capped():
    p = proc("def f(a):\n    return True\n", cap=1)
    for a in (
        {"diaSourceId": 3},
        {"diaSourceId": 3, "diaSource": None},
        {"diaSourceId": 3, "diaSource": {"visit": None}},
    ):
        oc = p.process_alert(a)
        assert (oc.kind, oc.reason, oc.alert_id) == (ERROR, "missing-visit-field", 3)
        assert "diaSource.visit" in oc.message


def test_slow_filter_is_stopped_at_its_budget_and_the_next_alert_is_fine():
    src = (
        "import time\n"
        "def f(a):\n"
        "    if a['diaSourceId'] == 1:\n"
        "        try:\n"
        "            time.sleep(5)\n"
        "        except Exception:\n"
        "            return True\n"  # a filter's own except Exception must not swallow the timeout
        "    return True\n"
    )
    p = proc(src, timeout=0.2)
    t0 = time.monotonic()
    oc = p.process_alert(alert(1))
    assert time.monotonic() - t0 < 2
    assert (oc.kind, oc.reason) == (ERROR, "filter-timeout")
    assert p.process_alert(alert(2)).kind == ACCEPTED


def test_undecodable_value_is_a_decode_error():
    oc = proc("def f(a):\n    return True\n").process(b"not avro at all")
    assert (oc.kind, oc.reason) == (ERROR, "decode-error")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "alertfilter", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_check_cli_on_a_missing_alert_file(tmp_path):
    f = tmp_path / "f.py"
    f.write_text("def f(a):\n    return True\n")
    r = run_cli("check", f, "--alerts", tmp_path / "nope.avro")
    assert r.returncode != 0 and "cannot read alerts" in r.stderr


def test_simulate_cli_then_check_with_the_original_visit_field(tmp_path):
    out = tmp_path / "sim.avro"
    r = run_cli(
        "simulate",
        "--out",
        out,
        "--visits",
        "100,101,102",
        "--alerts-per-visit",
        "30",
        "--history",
        "3",
        "--cutout-bytes",
        "64",
    )
    assert r.returncode == 0, r.stderr
    f = tmp_path / "all.py"
    f.write_text("def f(a):\n    return True\n")
    # ccdVisitId = visit * 1000 + detector: cap per CCD-visit, as the original design did.
    r = run_cli(
        "check", f, "--alerts", out, "--visit-field", "diaSource.ccdVisitId", "--json", "--max-alerts-per-visit", "1"
    )
    res = json.loads(r.stdout)
    _, records = read_container(str(out))
    assert res["alerts"] == 90 and res["accepted"] == len({a["diaSource"]["ccdVisitId"] for a in records})
    r = run_cli("check", f, "--alerts", out, "--json", "--max-alerts-per-visit", "1")  # the schema's: ccdVisitId
    assert json.loads(r.stdout)["accepted"] == res["accepted"]
    r = run_cli("check", f, "--alerts", out, "--json", "--visit-field", "diaSource.visit")  # Rubin's: absent here
    assert json.loads(r.stdout)["errors_by_reason"] == {"missing-visit-field": 90}


# --- the visit id: an int or a string, nothing else ----------------------------------------------------
@pytest.mark.parametrize(
    ("visit", "words"),
    [
        ({"id": 1}, "holds a dict {'id': 1}"),
        ([1, 2], "holds a list [1, 2]"),
        (float("nan"), "holds a float nan"),
        (59000.5, "holds a float 59000.5"),
        (True, "holds a bool True"),
        (b"12", "holds a bytes b'12'"),
    ],
)
def test_visit_that_is_not_an_int_or_string_is_an_error_naming_its_type(visit, words):
    p = proc("def f(a):\n    return True\n", cap=1)
    for _ in range(3):  # never crashes the cap, never slips through it
        oc = p.process_alert(alert(7, visit=visit))
        assert (oc.kind, oc.reason, oc.alert_id) == (ERROR, "invalid-visit-field", 7)
        assert words in oc.message and "diaSource.visit" in oc.message and "integer or a string" in oc.message


def test_int_and_string_visits_are_capped_separately():
    p = proc("def f(a):\n    return True\n", cap=1)
    kinds = [p.process_alert(alert(i, visit=v)).kind for i, v in enumerate([12, "12", 12, "12", "a,b", "a,b"])]
    assert kinds == [ACCEPTED, ACCEPTED, CAPPED, CAPPED, ACCEPTED, CAPPED]


def test_invalid_visit_reason_is_a_registered_metric_label():
    from alertfilter.metrics import RunnerMetrics
    from alertfilter.outcome import Reason

    assert "invalid-visit-field" in list(Reason)
    text = __import__("prometheus_client").generate_latest(RunnerMetrics().registry).decode()
    assert 'alertfilter_errors_total{reason="invalid-visit-field"} 0.0' in text


# --- what a filter raises or returns never stops the loop ----------------------------------------------
@pytest.mark.parametrize(
    ("stmt", "name"),
    [
        ("import sys; sys.exit(3)", "SystemExit: 3"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("raise GeneratorExit", "GeneratorExit"),
        ("raise ValueError('x' * 5000)", "ValueError: xxx"),
    ],
)
def test_filter_that_exits_or_interrupts_is_a_filter_exception(stmt, name):
    p = proc(f"def f(a):\n    if a['diaSourceId'] == 1:\n        {stmt}\n    return True\n")
    oc = p.process_alert(alert(1))
    assert (oc.kind, oc.reason) == (ERROR, "filter-exception") and oc.message.startswith(name)
    assert len(oc.message) <= 1000
    assert p.process_alert(alert(2)).kind == ACCEPTED


def test_exception_whose_str_raises_is_reported_by_its_type():
    src = (
        "class Odd(Exception):\n"
        "    def __str__(self):\n"
        "        raise RuntimeError('str boom')\n"
        "def f(a):\n"
        "    raise Odd()\n"
    )
    oc = proc(src).process_alert(alert(1))
    assert (oc.kind, oc.reason, oc.message) == (ERROR, "filter-exception", "Odd: <Odd object>")


def test_result_whose_repr_or_bool_raises_is_a_non_bool_result():
    src = "class R:\n    def __repr__(self):\n        raise RuntimeError('repr boom')\ndef f(a):\n    return R()\n"
    oc = proc(src).process_alert(alert(1))
    assert (oc.kind, oc.reason, oc.message) == (ERROR, "non-bool-result", "filter returned R <R object>, not bool")
    fake = (
        "class bool_:\n"
        "    __module__ = 'numpy'\n"
        "    def __bool__(self):\n"
        "        raise ZeroDivisionError('boom')\n"
        "def f(a):\n"
        "    return bool_()\n"
    )
    oc = proc(fake).process_alert(alert(1))
    assert (oc.kind, oc.reason) == (ERROR, "non-bool-result") and "truth value cannot be read" in oc.message


def test_numpy_booleans_are_accepted():
    pytest.importorskip("numpy")
    p = proc("import numpy as np\ndef f(a):\n    return np.float64(a['diaSource']['x']) > 0\n")
    assert p.process_alert(alert(1, x=1.0)).kind == ACCEPTED
    assert p.process_alert(alert(2, x=-1.0)).kind == REJECTED


def test_filter_that_swallows_its_timeout_is_still_a_timeout():
    src = (
        "import time\n"
        "def f(a):\n"
        "    try:\n"
        "        time.sleep(3)\n"
        "    except BaseException:\n"
        "        pass\n"
        "    return True\n"
    )
    p = proc(src, timeout=0.2)
    t0 = time.monotonic()
    oc = p.process_alert(alert(1))
    assert (oc.kind, oc.reason) == (ERROR, "filter-timeout") and time.monotonic() - t0 < 2
    assert proc("def f(a):\n    return 1\n").process_alert(alert(2)).reason == "non-bool-result"  # no stale alarm
