"""``alertfilter check`` on the shared real alerts as Kafka holds them (one Confluent-wire message per
file, Rubin's schema ids), and on ZTF's alerts with ZTF's fields, found from the schema alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fastavro

from alertfilter.codecs import encode_confluent
from alertfilter.schemas import rubin_schema_id

BRIGHT = 'def f(alert):\n    return alert["diaSource"]["snr"] > 5\n'


def check(tmp_path: Path, source: str, *args: object) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "f.py"
    f.write_text(source)
    cmd = [sys.executable, "-m", "alertfilter", "check", str(f), "--json", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_real_alerts_as_dumped_kafka_records_give_the_containers_verdicts(alerts_dir, tmp_path):
    src = alerts_dir / "rubin-v10_0-real-20.avro"
    with open(src, "rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        records = list(reader)
    assert isinstance(schema, dict)
    sid = rubin_schema_id("lsst.v10_0.alert")
    assert sid == 1000
    msgs, schemas = tmp_path / "records", tmp_path / "schemas"
    msgs.mkdir()
    schemas.mkdir()
    parsed = fastavro.parse_schema(schema)
    for offset, rec in enumerate(records):
        assert isinstance(rec, dict)
        (msgs / f"alerts-0-{offset}.bin").write_bytes(encode_confluent(rec, parsed, sid))
    (schemas / "lsst.v10_0.alert.avsc").write_text(json.dumps(schema))  # Rubin's file name, id from it

    one = check(tmp_path, BRIGHT, "--alerts", msgs / "alerts-0-0.bin")
    assert one.returncode == 1 and "MemoryError" not in one.stderr
    assert "schema id 1000: give --schema-dir or --schema-registry" in one.stderr

    from_records = check(tmp_path, BRIGHT, "--alerts", msgs, "--schema-dir", schemas)
    from_file = check(tmp_path, BRIGHT, "--alerts", src)
    assert from_records.returncode == 0, from_records.stderr
    assert json.loads(from_records.stdout) == json.loads(from_file.stdout)
    assert json.loads(from_file.stdout)["alerts"] == 20


def test_ztf_alerts_are_checked_with_ztfs_id_and_visit_without_options(alerts_dir, tmp_path):
    files = [alerts_dir / "ZTF19acihgng.avro", alerts_dir / "ZTF19acxxwrs.avro"]
    r = check(tmp_path, 'def f(alert):\n    return alert["candidate"]["magpsf"] < 19\n', "--alerts", *files)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["errors"] == 0  # the visit is ZTF's candidate.pid, not Rubin's diaSource.visit
    assert res["accepted_ids"] == [1060135832015015002, 1079453312715015005]  # candid


def test_rubin_v11_records_are_checked_with_rubins_fields_without_options(alerts_dir, tmp_path):
    # The real v10.0 alerts under a v11.1 schema name (Rubin's ids and visits stay where they were),
    # as dumped Kafka records of schema id 1101: the fields come from the schema's name alone.
    src = alerts_dir / "rubin-v10_0-real-20.avro"
    with open(src, "rb") as fh:
        reader = fastavro.reader(fh)
        text = json.dumps(reader.writer_schema).replace("lsst.v10_0", "lsst.v11_1")
        records = list(reader)
    schema = json.loads(text)
    msgs, schemas = tmp_path / "records", tmp_path / "schemas"
    msgs.mkdir()
    schemas.mkdir()
    parsed = fastavro.parse_schema(schema)
    for offset, rec in enumerate(records):
        assert isinstance(rec, dict)
        (msgs / f"alerts-0-{offset}.bin").write_bytes(encode_confluent(rec, parsed, 1101))
    (schemas / "lsst.v11_1.alert.avsc").write_text(text)
    v11 = check(tmp_path, BRIGHT, "--alerts", msgs, "--schema-dir", schemas)
    v10 = check(tmp_path, BRIGHT, "--alerts", src)
    assert v11.returncode == 0, v11.stderr
    res = json.loads(v11.stdout)
    assert res["errors"] == 0 and res["alerts"] == 20  # visits read at diaSource.visit
    assert res["accepted_ids"] == json.loads(v10.stdout)["accepted_ids"]  # ids at diaSourceId
    assert all(isinstance(i, int) and i > 10**17 for i in res["accepted_ids"])
    out = tmp_path / "v11.html"
    cmd = [sys.executable, "-m", "alertfilter", "report", str(msgs), "--schema-dir", str(schemas), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "20 alerts (20 Rubin v11.1)" in out.read_text()


def test_a_directory_of_several_surveys_says_why_their_fields_differ(alerts_dir, tmp_path):
    # the shared folder: ZTF's files come first, so ZTF's fields are the defaults and Rubin's alerts
    # lack candidate.pid; the hint gives each survey's fields and says to check each apart
    f = tmp_path / "f.py"
    f.write_text(BRIGHT)
    r = subprocess.run(
        [sys.executable, "-m", "alertfilter", "check", str(f), "--alerts", str(alerts_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "missing-visit-field=24" in r.stdout
    assert "Rubin: --visit-field diaSource.visit; ZTF: --visit-field candidate.pid" in r.stdout
    assert "files of several surveys need a check each" in r.stdout
