"""The per-alert decision and the offline backtest (``alertfilter check``), on bad input too."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import fastavro

from alertfilter import load_filter
from alertfilter.cap import VisitCap
from alertfilter.codecs import Decoder, encode_confluent, read_container
from alertfilter.processor import ACCEPTED, AlertProcessor
from alertfilter.schemas import StaticSchemaSource
from alertfilter.tools import check

ROOT = Path(__file__).resolve().parents[2]
BRIGHT = ROOT / "examples" / "filters" / "bright_significant.py"


def proc(src: str, cap=None, timeout=1.0, visit_field="diaSource.visit") -> AlertProcessor:
    return AlertProcessor(load_filter(src), Decoder("container"), VisitCap(cap), visit_field, "diaSourceId", timeout)


def test_confluent_decoding_through_the_processor(alerts_dir):
    schema, records = read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))
    parsed = fastavro.parse_schema(schema)
    p = AlertProcessor(
        load_filter(BRIGHT.read_text()), Decoder("confluent", StaticSchemaSource({1000: schema})), VisitCap(20)
    )
    outcomes = [p.process(encode_confluent(r, parsed, 1000)) for r in records]
    assert [o.alert_id for o in outcomes if o.kind == ACCEPTED] == [169813007083241522]


def independent_bright(records, cap=20):
    """The original design's rule computed directly on the decoded records."""
    import math

    counts: dict[Any, int] = {}
    ids = []
    for r in records:
        s = r["diaSource"]
        ok = (
            s["snr"] is not None
            and s["psfFlux"] is not None
            and not math.isnan(s["snr"])
            and s["snr"] > 5
            and s["psfFlux"] > 10 ** ((31.4 - 20) / 2.5)
        )
        if ok and counts.get(s["visit"], 0) < cap:
            counts[s["visit"]] = counts.get(s["visit"], 0) + 1
            ids.append(r["diaSourceId"])
    return ids


def test_check_on_the_real_alerts_matches_an_independent_computation(alerts_dir):
    files = [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"]
    records = [r for f in files for r in read_container(str(f))[1]]
    res = check(BRIGHT.read_text(), files)
    assert res.alerts == 24 and res.errors == 0
    assert res.accepted_ids == independent_bright(records)


def test_check_cap_on_interleaved_real_visits(alerts_dir):
    # The 20 real alerts come from several interleaved visits; cap 1 keeps the first alert of each visit.
    f = alerts_dir / "rubin-v10_0-real-20.avro"
    _, records = read_container(str(f))
    res = check("def f(a):\n    return True\n", [f], max_per_visit=1)
    first: dict[Any, Any] = {}
    for r in records:
        first.setdefault(r["diaSource"]["visit"], r["diaSourceId"])
    assert res.accepted_ids == list(first.values())
    assert len(first) > 3 and res.accepted == len(first) and res.capped == 20 - len(first)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "alertfilter", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_check_cli_json(alerts_dir):
    r = run_cli("check", BRIGHT, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {k: out[k] for k in ("alerts", "accepted", "capped", "errors", "accepted_ids")} == {
        "alerts": 20,
        "accepted": 1,
        "capped": 0,
        "errors": 0,
        "accepted_ids": [169813007083241522],
    }


def test_check_cli_reports_source_errors_with_line_and_column(tmp_path, alerts_dir):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(alert):\n    return alert['diaSource']['snr'] >\n")
    r = run_cli("check", bad, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro")
    assert r.returncode == 2
    assert r.stderr.startswith(f"{bad}:2:") and "syntax error" in r.stderr


def test_check_cli_counts_errors_of_a_raising_filter(tmp_path, alerts_dir):
    f = tmp_path / "raises.py"
    f.write_text(
        "def f(alert):\n    if alert['diaSource']['snr'] > 6:\n        raise ValueError('too bright')\n    return True\n"
    )
    r = run_cli("check", f, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro", "--json", "--no-visit-cap")
    out = json.loads(r.stdout)
    assert out["errors"] == out["errors_by_reason"]["filter-exception"] > 0
    assert out["errors"] + out["accepted"] == 20


def test_check_cli_reports_a_record_as_visit_field(alerts_dir):
    r = run_cli("check", BRIGHT, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro", "--visit-field", "diaSource")
    assert r.returncode == 0, r.stderr
    assert "20 errors" in r.stdout and "invalid-visit-field=20" in r.stdout
    assert "holds a dict" in r.stdout and "does not hold an integer or a string in some alerts" in r.stdout
    r = run_cli(
        "check", BRIGHT, "--alerts", alerts_dir / "rubin-v10_0-real-20.avro", "--visit-field", "diaSource", "--json"
    )
    assert json.loads(r.stdout)["errors_by_reason"] == {"invalid-visit-field": 20}
