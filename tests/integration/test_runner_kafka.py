"""The filter-runner on a real Kafka broker with the real alerts."""

from __future__ import annotations

import math
import random
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from alertfilter.sink import H_ALERT_ID, H_FILTER, H_REASON, H_SHA, H_SRC_OFFSET, H_VISIT

from .streams import RunnerProcess, encode_files, produce_values, read_topic

ROOT = Path(__file__).resolve().parents[2]
BRIGHT = ROOT / "examples" / "filters" / "bright_significant.py"
MAG20_NJY = 10 ** ((31.4 - 20) / 2.5)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def capped(records, keep, cap):
    counts: dict[Any, int] = {}
    ids = []
    for r in records:
        if keep(r):
            v = r["diaSource"]["visit"]
            if cap is None or counts.get(v, 0) < cap:
                counts[v] = counts.get(v, 0) + 1
                ids.append(r["diaSourceId"])
    return ids


def test_runner_forwards_exactly_the_accepted_real_alerts(kafka, alerts_dir, tmp_path, topic_prefix):
    files = [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"]
    records, values = encode_files(files, tmp_path / "schemas")
    records, values = records * 5, values * 5  # 120 alerts, visits interleaved
    inp = f"{topic_prefix}-alerts"
    produce_values(kafka.bootstrap, inp, values)
    # A bright-source rule loose enough to accept many, with a cap that bites.
    flt = write(
        tmp_path,
        "f.py",
        "def positive(alert):\n    s = alert['diaSource']\n"
        "    return s['psfFlux'] is not None and s['psfFlux'] > 1500\n",
    )
    out = f"{topic_prefix}-out"
    r = RunnerProcess(
        kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", "--max-alerts-per-visit", "3"
    )
    assert r.run_to_idle() == 0, r.log()
    got = read_topic(kafka.bootstrap, out)
    expected = capped(records, lambda a: a["diaSource"]["psfFlux"] is not None and a["diaSource"]["psfFlux"] > 1500, 3)
    import fastavro  # noqa: F401 - ids read from headers below need no decoding

    from alertfilter.codecs import Decoder
    from alertfilter.schemas import DirectorySchemaSource

    dec = Decoder("confluent", DirectorySchemaSource(tmp_path / "schemas"))
    assert [dec.decode(g.value)["diaSourceId"] for g in got] == expected
    assert len(expected) > 5
    # original bytes forwarded untouched, provenance headers added
    by_value = set(values)
    assert all(g.value in by_value for g in got)
    import hashlib

    assert got[0].headers[H_FILTER] == b"positive"
    assert got[0].headers[H_SHA] == hashlib.sha256(flt.read_bytes()).hexdigest().encode()
    assert got[0].headers[H_VISIT] == str(dec.decode(got[0].value)["diaSource"]["visit"]).encode()
    assert read_topic(kafka.bootstrap, f"{out}.deadletter") == []


def test_original_design_filter_on_real_alerts(kafka, alerts_dir, tmp_path, topic_prefix):
    files = [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"]
    records, values = encode_files(files, tmp_path / "schemas")
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-bright"
    produce_values(kafka.bootstrap, inp, values)
    r = RunnerProcess(kafka.bootstrap, inp, out, BRIGHT, tmp_path / "schemas", tmp_path / "run.log")
    assert r.run_to_idle() == 0, r.log()

    def bright(a):
        s = a["diaSource"]
        return not math.isnan(s["snr"]) and s["snr"] > 5 and s["psfFlux"] is not None and s["psfFlux"] > MAG20_NJY

    got = read_topic(kafka.bootstrap, out)
    assert [values.index(g.value or b"") for g in got] == [i for i, a in enumerate(records) if bright(a)]


def test_bad_input_goes_to_the_dead_letter_topic_and_the_loop_goes_on(kafka, alerts_dir, tmp_path, topic_prefix):
    records, values = encode_files(
        [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"], tmp_path / "schemas"
    )
    import fastavro

    from alertfilter.codecs import encode_confluent
    from alertfilter.simulate import alert_schema, simulate

    sim = next(iter(simulate([1], 1, cutout_bytes=10)))  # an alert without diaSource.visit (schema id 1)
    import json

    (tmp_path / "schemas" / "1.avsc").write_text(json.dumps(alert_schema()))
    sim_value = encode_confluent(sim, fastavro.parse_schema(alert_schema()), 1)
    good = values[0]
    bad = [
        (b"garbage", "decode-error"),
        (b"\x00\x00\x00\x00\x09" + good[5:], "decode-error"),  # unknown schema id
        (good[: len(good) // 3], "decode-error"),  # truncated
        (sim_value, "missing-visit-field"),
    ]
    src = (
        "import time\n"
        "def f(alert):\n"
        "    i = alert['diaSourceId']\n"
        f"    if i == {records[1]['diaSourceId']}:\n        raise KeyError('boom')\n"
        f"    if i == {records[2]['diaSourceId']}:\n        return 1\n"
        f"    if i == {records[3]['diaSourceId']}:\n        time.sleep(30)\n"
        "    return True\n"
    )
    flt = write(tmp_path, "f.py", src)
    stream = [good, bad[0][0], values[1], bad[1][0], values[2], bad[2][0], values[3], bad[3][0], values[20], values[4]]
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, stream)
    # values[20] is a ~225 KB long-history alert: over a 200 KB producer limit, so output-too-large
    r = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        flt,
        tmp_path / "schemas",
        tmp_path / "run.log",
        "--no-visit-cap",
        "--filter-timeout",
        "0.5",
        "--max-message-bytes",
        "200000",
    )
    assert r.run_to_idle() == 0, r.log()
    dlq = read_topic(kafka.bootstrap, f"{out}.deadletter")
    reasons = [(int(d.headers[H_SRC_OFFSET]), d.headers[H_REASON].decode()) for d in dlq]
    assert reasons == [
        (1, "decode-error"),
        (2, "filter-exception"),
        (3, "decode-error"),
        (4, "non-bool-result"),
        (5, "decode-error"),
        (6, "filter-timeout"),
        (7, "missing-visit-field"),
        (8, "output-too-large"),
    ]
    assert dlq[0].value == b"garbage"  # the original bytes kept for replay
    assert dlq[1].headers[H_ALERT_ID] == str(records[1]["diaSourceId"]).encode()
    assert b"KeyError" in dlq[1].headers["alertfilter.error.message"]
    assert dlq[-1].value is None  # too large to keep; the source offset says where it is
    got = read_topic(kafka.bootstrap, out)
    assert [g.value for g in got] == [good, values[4]]
    log = r.log()
    assert "offset=1" in log and "decode-error" in log


def _sim_stream(tmp_path: Path, n_visits: int, per_visit: int):
    import json

    import fastavro

    from alertfilter.codecs import encode_confluent
    from alertfilter.simulate import alert_schema, simulate

    schema = alert_schema()
    (tmp_path / "schemas").mkdir(exist_ok=True)
    (tmp_path / "schemas" / "1.avsc").write_text(json.dumps(schema))
    parsed = fastavro.parse_schema(schema)
    alerts = list(simulate(list(range(500, 500 + n_visits)), per_visit, history=2, cutout_bytes=200, seed=3))
    rng = random.Random(5)
    rng.shuffle(alerts)  # visits interleave
    return alerts, [encode_confluent(a, parsed, 1) for a in alerts]


SIM_FILTER = "def f(alert):\n    return alert['diaSource']['snr'] > 20\n"


def _kill_loop(runner: RunnerProcess, kills: int, rng: random.Random) -> None:
    for _ in range(kills):
        runner.start()
        time.sleep(rng.uniform(2.5, 4.5))
        runner.kill(signal.SIGKILL)
        runner.wait(30)


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_accepted_alert(kafka, tmp_path, topic_prefix):
    alerts, values = _sim_stream(tmp_path, 20, 300)
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values, partitions=3)
    flt = write(
        tmp_path, "f.py", "import time\n" + SIM_FILTER.replace("    return", "    time.sleep(0.0005)\n    return")
    )
    r = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        flt,
        tmp_path / "schemas",
        tmp_path / "run.log",
        "--no-visit-cap",
        "--visit-field",
        "diaSource.ccdVisitId",
        "--id-field",
        "alertId",
        "--batch-size",
        "50",
    )
    _kill_loop(r, 3, random.Random(1))
    assert r.run_to_idle() == 0, r.log()
    expected = {a["alertId"] for a in alerts if a["diaSource"]["snr"] > 20}
    got = read_topic(kafka.bootstrap, out)
    from alertfilter.codecs import Decoder
    from alertfilter.schemas import DirectorySchemaSource

    dec = Decoder("confluent", DirectorySchemaSource(tmp_path / "schemas"))
    ids = [dec.decode(g.value)["alertId"] for g in got]
    assert set(ids) == expected  # at least once: nothing lost
    assert len(ids) >= len(expected)


@pytest.mark.slow
def test_exactly_once_with_sigkill_writes_each_accepted_alert_once_and_keeps_the_cap(kafka, tmp_path, topic_prefix):
    alerts, values = _sim_stream(tmp_path, 20, 300)
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values, partitions=1)
    flt = write(
        tmp_path, "f.py", "import time\n" + SIM_FILTER.replace("    return", "    time.sleep(0.0005)\n    return")
    )
    cap = 7
    r = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        flt,
        tmp_path / "schemas",
        tmp_path / "run.log",
        "--exactly-once",
        "--max-alerts-per-visit",
        str(cap),
        "--visit-field",
        "diaSource.ccdVisitId",
        "--id-field",
        "alertId",
        "--batch-size",
        "50",
    )
    _kill_loop(r, 3, random.Random(2))
    assert r.run_to_idle() == 0, r.log()
    counts: dict[Any, int] = {}
    expected = []
    for a in alerts:
        v = a["diaSource"]["ccdVisitId"]
        if a["diaSource"]["snr"] > 20 and counts.get(v, 0) < cap:
            counts[v] = counts.get(v, 0) + 1
            expected.append(a["alertId"])
    from alertfilter.codecs import Decoder
    from alertfilter.schemas import DirectorySchemaSource

    dec = Decoder("confluent", DirectorySchemaSource(tmp_path / "schemas"))
    ids = [dec.decode(g.value)["alertId"] for g in read_topic(kafka.bootstrap, out, read_committed=True)]
    assert len(ids) == len(set(ids)), "an accepted alert was written twice"
    assert ids == expected


def test_sigterm_stops_cleanly_and_commits(kafka, alerts_dir, tmp_path, topic_prefix):
    _records, values = encode_files([alerts_dir / "rubin-v10_0-real-20.avro"], tmp_path / "schemas")
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values)
    flt = write(tmp_path, "f.py", "def f(alert):\n    return True\n")
    port = __import__("alertfilter_devstack.procs", fromlist=["free_port"]).free_port()
    r = RunnerProcess(kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", "--no-visit-cap")
    r.args[r.args.index("--metrics-port") + 1] = str(port)
    r.start()
    deadline = time.monotonic() + 60
    body = b""
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            if b"alertfilter_alerts_accepted_total 20.0" in body:
                break
        except OSError:
            pass
        time.sleep(0.3)
    assert b"alertfilter_alerts_accepted_total 20.0" in body, r.log()
    assert b"alertfilter_alerts_consumed_total 20.0" in body
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    r.kill(signal.SIGTERM)
    assert r.wait(60) == 0, r.log()
    # committed: a restart reads nothing again
    r2 = RunnerProcess(kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run2.log", "--no-visit-cap")
    assert r2.run_to_idle() == 0
    assert len(read_topic(kafka.bootstrap, out)) == 20


def test_runner_refuses_settings_that_would_break_the_consumer_group(tmp_path):
    import subprocess
    import sys

    flt = write(tmp_path, "f.py", "def f(alert):\n    return True\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "alertfilter",
            "run",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--input",
            "a",
            "--output",
            "b",
            "--filter",
            str(flt),
            "--schema-dir",
            str(tmp_path),
            "--batch-size",
            "1000",
            "--filter-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "max.poll.interval.ms" in r.stderr


def test_runner_reports_a_bad_filter_with_line_and_column(tmp_path):
    import subprocess
    import sys

    flt = write(tmp_path, "f.py", "def f(alert):\n    return (\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "alertfilter",
            "run",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--input",
            "a",
            "--output",
            "b",
            "--filter",
            str(flt),
            "--schema-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and f"{flt}:2:" in r.stderr


def test_missing_topics_are_named_and_the_runner_exits(kafka, tmp_path, topic_prefix):
    import subprocess
    import sys

    flt = write(tmp_path, "f.py", "def f(alert):\n    return True\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "alertfilter",
            "run",
            "--bootstrap-servers",
            kafka.bootstrap,
            "--input",
            f"{topic_prefix}-none",
            "--output",
            f"{topic_prefix}-out",
            "--filter",
            str(flt),
            "--schema-dir",
            str(tmp_path),
            "--topic-wait",
            "3",
            "--metrics-port",
            "-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3
    assert f"{topic_prefix}-none, {topic_prefix}-out, {topic_prefix}-out.deadletter do not exist" in r.stderr
