"""``alertfilter report --bootstrap-servers B TOPIC``: the page of what a topic holds (a filter's
output topic, say), read from its beginning to the end of every partition on a real broker."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.integration.streams import encode_files, produce_values


def test_report_of_a_topic_draws_every_alert_it_holds(kafka, alerts_dir, tmp_path):
    _, values = encode_files([alerts_dir / "rubin-v10_0-history-4.avro"], tmp_path / "schemas")
    topic = f"report-{time.time_ns()}"
    produce_values(kafka.bootstrap, topic, values, partitions=2)
    out = tmp_path / "topic.html"
    cmd = [sys.executable, "-m", "alertfilter", "report", topic, "--bootstrap-servers", kafka.bootstrap]
    cmd += ["--schema-dir", str(tmp_path / "schemas"), "--idle-timeout", "120", "--out", str(out)]
    started = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 100  # it ends at the end of both partitions, not after 120 s idle
    page = out.read_text()
    assert f"Alerts of topic {topic}" in page and "4 alerts (4 Rubin v10.0)" in page
    assert len(re.findall(r'<img class="cutout-img"', page)) == 12
    assert len(set(re.findall(rf"<td>{topic}/[01]@\d+</td>", page))) == 4  # where each came from


def test_report_of_a_topic_without_schemas_says_what_to_give(kafka, alerts_dir, tmp_path):
    _, values = encode_files([alerts_dir / "rubin-v10_0-history-4.avro"], tmp_path / "schemas")
    topic = f"report-{time.time_ns()}"
    produce_values(kafka.bootstrap, topic, values[:1])
    out = tmp_path / "topic.html"
    cmd = [sys.executable, "-m", "alertfilter", "report", topic, "--bootstrap-servers", kafka.bootstrap]
    r = subprocess.run([*cmd, "--idle-timeout", "3", "--out", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 1 and not out.exists()
    assert f"{topic}/0@0 holds a Confluent-wire-format message with schema id 1000" in r.stderr


def test_report_of_a_topic_names_a_record_that_is_not_an_alert(kafka, alerts_dir, tmp_path):
    _, values = encode_files([alerts_dir / "rubin-v10_0-history-4.avro"], tmp_path / "schemas")
    topic = f"report-{time.time_ns()}"
    produce_values(kafka.bootstrap, topic, [values[0], b"<script>alert(1)</script> not an alert"])
    out = tmp_path / "topic.html"
    cmd = [sys.executable, "-m", "alertfilter", "report", topic, "--bootstrap-servers", kafka.bootstrap]
    cmd += ["--schema-dir", str(tmp_path / "schemas"), "--idle-timeout", "3", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180)
    assert r.returncode == 1 and not out.exists() and "Traceback" not in r.stderr
    assert f"{topic}/0@1 is not an alert: it holds a text file (it starts '<script>alert(1)</script>" in r.stderr
