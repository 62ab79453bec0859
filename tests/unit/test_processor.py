"""The per-alert decision and the offline backtest (``alertfilter check``), on bad input too."""

import json
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest

from alertfilter import load_filter
from alertfilter.cap import VisitCap
from alertfilter.codecs import Decoder, encode_confluent, read_container
from alertfilter.processor import (ACCEPTED, CAPPED, ERROR, REJECTED, AlertProcessor)
from alertfilter.schemas import StaticSchemaSource
from alertfilter.tools import check

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
    for a in ({"diaSourceId": 3}, {"diaSourceId": 3, "diaSource": None}, {"diaSourceId": 3, "diaSource": {"visit": None}}):
        oc = p.process_alert(a)
        assert (oc.kind, oc.reason, oc.alert_id) == (ERROR, "missing-visit-field", 3)
        assert "diaSource.visit" in oc.message


def test_slow_filter_is_stopped_at_its_budget_and_the_next_alert_is_fine():
    src = ("import time\n"
           "def f(a):\n"
           "    if a['diaSourceId'] == 1:\n"
           "        try:\n"
           "            time.sleep(5)\n"
           "        except Exception:\n"
           "            return True\n"  # a filter's own except Exception must not swallow the timeout
           "    return True\n")
    p = proc(src, timeout=0.2)
    t0 = time.monotonic()
    oc = p.process_alert(alert(1))
    assert time.monotonic() - t0 < 2
    assert (oc.kind, oc.reason) == (ERROR, "filter-timeout")
    assert p.process_alert(alert(2)).kind == ACCEPTED


def test_undecodable_value_is_a_decode_error():
    oc = proc("def f(a):\n    return True\n").process(b"not avro at all")
    assert (oc.kind, oc.reason) == (ERROR, "decode-error")


def test_confluent_decoding_through_the_processor(alerts_dir):
    schema, records = read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))
    parsed = fastavro.parse_schema(schema)
    p = AlertProcessor(load_filter(BRIGHT.read_text()), Decoder("confluent", StaticSchemaSource({1000: schema})),
                       VisitCap(20))
    outcomes = [p.process(encode_confluent(r, parsed, 1000)) for r in records]
    assert [o.alert_id for o in outcomes if o.kind == ACCEPTED] == [169813007083241522]


def independent_bright(records, cap=20):
    """The original design's rule computed directly on the decoded records."""
    import math

    counts, ids = {}, []
    for r in records:
        s = r["diaSource"]
        ok = s["snr"] is not None and s["psfFlux"] is not None and not math.isnan(s["snr"]) \
            and s["snr"] > 5 and s["psfFlux"] > 10 ** ((31.4 - 20) / 2.5)
        if ok and counts.get(s["visit"], 0) < cap:
            counts[s["visit"]] = counts.get(s["visit"], 0) + 1
            ids.append(r["diaSourceId"])
    return ids


def test_check_on_the_real_alerts_matches_an_independent_computation(alerts_dir):
    files = [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"]
    records = [r for f in files for r in read_container(str(f))[1]]
    res = check(load_filter(BRIGHT.read_text()), files)
    assert res.alerts == 24 and res.errors == 0
    assert res.accepted_ids == independent_bright(records)


def test_check_cap_on_interleaved_real_visits(alerts_dir):
    # The 20 real alerts come from several interleaved visits; cap 1 keeps the first alert of each visit.
    f = alerts_dir / "rubin-v10_0-real-20.avro"
    _, records = read_container(str(f))
    res = check(load_filter("def f(a):\n    return True\n"), [f], max_per_visit=1)
    first = {}
    for r in records:
        first.setdefault(r["diaSource"]["visit"], r["diaSourceId"])
    assert res.accepted_ids == list(first.values())
    assert len(first) > 3 and res.accepted == len(first) and res.capped == 20 - len(first)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "alertfilter", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_check_cli_json(alerts_dir):
    r = run_cli("check", BRIGHT, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {k: out[k] for k in ("alerts", "accepted", "capped", "errors", "accepted_ids")} == {
        "alerts": 20, "accepted": 1, "capped": 0, "errors": 0, "accepted_ids": [169813007083241522]}


def test_check_cli_reports_source_errors_with_line_and_column(tmp_path, alerts_dir):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(alert):\n    return alert['diaSource']['snr'] >\n")
    r = run_cli("check", bad, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro")
    assert r.returncode == 2
    assert r.stderr.startswith(f"{bad}:2:") and "syntax error" in r.stderr


def test_check_cli_counts_errors_of_a_raising_filter(tmp_path, alerts_dir):
    f = tmp_path / "raises.py"
    f.write_text("def f(alert):\n    if alert['diaSource']['snr'] > 6:\n        raise ValueError('too bright')\n    return True\n")
    r = run_cli("check", f, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro", "--json", "--no-visit-cap")
    out = json.loads(r.stdout)
    assert out["errors"] == out["errors_by_reason"]["filter-exception"] > 0
    assert out["errors"] + out["accepted"] == 20


def test_check_cli_on_a_missing_alert_file(tmp_path):
    f = tmp_path / "f.py"
    f.write_text("def f(a):\n    return True\n")
    r = run_cli("check", f, "--alerts", tmp_path / "nope.avro")
    assert r.returncode != 0 and "cannot read alerts" in r.stderr


def test_simulate_cli_then_check_with_the_original_visit_field(tmp_path):
    out = tmp_path / "sim.avro"
    r = run_cli("simulate", "--out", out, "--visits", "100,101,102", "--alerts-per-visit", "30", "--history", "3",
                "--cutout-bytes", "64")
    assert r.returncode == 0, r.stderr
    f = tmp_path / "all.py"
    f.write_text("def f(a):\n    return True\n")
    # ccdVisitId = visit * 1000 + detector: cap per CCD-visit, as the original design did.
    r = run_cli("check", f, "--alerts", out, "--visit-field", "diaSource.ccdVisitId", "--json", "--max-alerts-per-visit", "1")
    res = json.loads(r.stdout)
    _, records = read_container(str(out))
    assert res["alerts"] == 90 and res["accepted"] == len({a["diaSource"]["ccdVisitId"] for a in records})
    r = run_cli("check", f, "--alerts", out, "--json")  # default visit field diaSource.visit is absent here
    assert json.loads(r.stdout)["errors_by_reason"] == {"missing-visit-field": 90}
