"""The runner against hostile input and filters, on a real Kafka broker: a message too large for the
dead-letter topic, a filter that blocks the interpreter, swallows its timeout, kills its process or
tries to kill the runner, SIGTERM mid-batch, a malformed schema file, a slow batch and the liveness
probe."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

from alertfilter.kafkautil import ensure_topics
from alertfilter.sink import H_ALERT_ID, H_MESSAGE, H_REASON, H_SRC_OFFSET, H_VALUE_OMITTED

from .streams import RunnerProcess, committed, encode_files, produce_values, read_topic

ACCEPT_ALL = "def f(alert):\n    return True\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def real(alerts_dir: Path, tmp_path: Path):
    return encode_files([alerts_dir / "rubin-v10_0-real-20.avro"], tmp_path / "schemas")


def test_garbage_too_large_for_the_dead_letter_topic_goes_there_without_its_value(
    kafka, alerts_dir, tmp_path, topic_prefix
):
    _records, values = real(alerts_dir, tmp_path)
    huge = b"\x00\x00\x00\x03\xe8" + os.urandom(5 * 1024 * 1024)  # over the runner's 4 MiB producer limit
    big = b"\x00\x00\x00\x03\xe8" + os.urandom(500 * 1024)  # under it, over the topic's limit below
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, [values[0], huge, values[1], big, values[2]])
    ensure_topics(kafka.bootstrap, {f"{out}.deadletter": 1}, config={"max.message.bytes": str(200 * 1024)})
    r = RunnerProcess(
        kafka.bootstrap, inp, out, write(tmp_path, "f.py", ACCEPT_ALL), tmp_path / "schemas", tmp_path / "run.log"
    )
    assert r.run_to_idle() == 0, r.log()
    dlq = read_topic(kafka.bootstrap, f"{out}.deadletter")
    assert [(d.headers[H_SRC_OFFSET], d.headers[H_REASON], d.headers[H_VALUE_OMITTED], d.value) for d in dlq] == [
        (b"1", b"decode-error", b"true", None),
        (b"3", b"decode-error", b"true", None),
    ]
    assert [g.value for g in read_topic(kafka.bootstrap, out)] == [values[0], values[1], values[2]]
    assert committed(kafka.bootstrap, inp, f"g-{out}")[0][0] == 5


STUCK_IN_C = (
    "def f(alert):\n"
    "    if alert['diaSourceId'] == {stuck}:\n"
    "        return sum(range(10**12)) > 0  # a C call: no signal, no other thread runs meanwhile\n"
    "    return True\n"
)


def _decoded_ids(tmp_path: Path, recs) -> list[int]:
    from alertfilter.codecs import Decoder
    from alertfilter.schemas import DirectorySchemaSource

    dec = Decoder("confluent", DirectorySchemaSource(tmp_path / "schemas"))
    return [dec.decode(g.value)["diaSourceId"] for g in recs]


def test_filter_blocked_in_a_c_call_is_dead_lettered_and_the_runner_goes_on(kafka, alerts_dir, tmp_path, topic_prefix):
    records, values = real(alerts_dir, tmp_path)
    stuck = records[2]["diaSourceId"]
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values[:6])
    flt = write(tmp_path, "f.py", STUCK_IN_C.format(stuck=stuck))
    args = ("--no-visit-cap", "--batch-size", "4", "--filter-hard-timeout", "3")
    r = RunnerProcess(kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", *args)
    t0 = time.monotonic()
    assert r.run_to_idle(timeout=90) == 0, r.log()  # a stuck filter no longer ends the runner
    assert time.monotonic() - t0 < 40
    log = r.log()
    assert f"the filter call on alert {stuck} did not return within the hard limit of 3 s" in log
    assert 'File "<filter>", line 3 in f' in log  # where it was stuck
    dlq = read_topic(kafka.bootstrap, f"{out}.deadletter")
    assert len(dlq) == 1 and dlq[0].value == values[2]
    assert dlq[0].headers[H_REASON] == b"filter-timeout" and dlq[0].headers[H_ALERT_ID] == str(stuck).encode()
    assert dlq[0].headers[H_MESSAGE] == b"did not return within the hard limit of 3 s; the filter process was replaced"
    ids = _decoded_ids(tmp_path, read_topic(kafka.bootstrap, out))
    assert sorted(ids) == sorted(a["diaSourceId"] for a in records[:6] if a["diaSourceId"] != stuck)
    assert committed(kafka.bootstrap, inp, f"g-{out}")[0][0] == 6


def test_filter_that_swallows_its_timeout_forever_is_ended_exactly_once(kafka, alerts_dir, tmp_path, topic_prefix):
    records, values = real(alerts_dir, tmp_path)
    stuck = records[2]["diaSourceId"]
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values[:6])
    flt = write(
        tmp_path,
        "f.py",
        "import time\n"
        "def f(alert):\n"
        f"    while alert['diaSourceId'] == {stuck}:\n"
        "        try:\n"
        "            time.sleep(1)\n"
        "        except BaseException:\n"
        "            pass\n"
        "    return True\n",
    )
    args = ("--no-visit-cap", "--batch-size", "4", "--filter-hard-timeout", "3", "--exactly-once")
    r = RunnerProcess(kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", *args)
    assert r.run_to_idle(timeout=90) == 0, r.log()
    assert committed(kafka.bootstrap, inp, f"g-{out}")[0][0] == 6
    ids = _decoded_ids(tmp_path, read_topic(kafka.bootstrap, out, read_committed=True))
    assert sorted(ids) == sorted(a["diaSourceId"] for a in records[:6] if a["diaSourceId"] != stuck)  # each once
    dlq = read_topic(kafka.bootstrap, f"{out}.deadletter", read_committed=True)
    assert [(d.headers[H_SRC_OFFSET], d.headers[H_REASON]) for d in dlq] == [(b"2", b"filter-timeout")]


def test_an_alert_that_kills_the_filter_process_is_dead_lettered_and_the_runner_goes_on(
    kafka, alerts_dir, tmp_path, topic_prefix
):
    records, values = real(alerts_dir, tmp_path)
    fatal = records[1]["diaSourceId"]
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values[:5])
    flt = write(
        tmp_path,
        "f.py",
        "import os, signal\n"
        "def f(alert):\n"
        f"    if alert['diaSourceId'] == {fatal}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return True\n",
    )
    r = RunnerProcess(kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", "--no-visit-cap")
    assert r.run_to_idle(timeout=90) == 0, r.log()
    dlq = read_topic(kafka.bootstrap, f"{out}.deadletter")
    assert [(d.headers[H_SRC_OFFSET], d.headers[H_REASON], d.headers[H_ALERT_ID]) for d in dlq] == [
        (b"1", b"filter-crashed", str(fatal).encode())
    ]
    assert b"signal 9 (SIGKILL)" in dlq[0].headers[H_MESSAGE] and dlq[0].value == values[1]
    assert len(read_topic(kafka.bootstrap, out)) == 4
    assert committed(kafka.bootstrap, inp, f"g-{out}")[0][0] == 5


ATTACK_THE_RUNNER = (
    "import os, signal\n"
    "ACTIONS = {actions}\n"
    "def f(alert):\n"
    "    action = ACTIONS.get(alert['diaSourceId'])\n"
    "    if action:\n"
    "        eval(action)  # the runner is this process's parent\n"
    "    return True\n"
)


def test_a_filter_cannot_kill_or_stop_the_runner(kafka, alerts_dir, tmp_path, topic_prefix):
    records, values = real(alerts_dir, tmp_path)
    attacks = [
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.kill(os.getppid(), signal.SIGSTOP)",
        "os.kill(os.getppid(), signal.SIGTERM)",
        "os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
    ]
    actions = {records[i + 1]["diaSourceId"]: a for i, a in enumerate(attacks)}
    actions[records[5]["diaSourceId"]] = "os.kill(os.getpid(), signal.SIGKILL)"  # its own process: allowed
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values[:7])
    flt = write(tmp_path, "f.py", ATTACK_THE_RUNNER.format(actions=actions))
    r = RunnerProcess(kafka.bootstrap, inp, out, flt, tmp_path / "schemas", tmp_path / "run.log", "--no-visit-cap")
    assert r.run_to_idle(timeout=90) == 0, r.log()  # the runner was neither ended nor stopped
    dlq = read_topic(kafka.bootstrap, f"{out}.deadletter")
    assert [(d.headers[H_SRC_OFFSET], d.headers[H_REASON]) for d in dlq] == [
        (b"1", b"filter-exception"),
        (b"2", b"filter-exception"),
        (b"3", b"filter-exception"),
        (b"4", b"filter-exception"),
        (b"5", b"filter-crashed"),
    ]
    assert all(b"PermissionError" in d.headers[H_MESSAGE] for d in dlq[:4])
    assert [g.value for g in read_topic(kafka.bootstrap, out)] == [values[0], values[6]]
    assert committed(kafka.bootstrap, inp, f"g-{out}")[0][0] == 7


def test_sigterm_mid_batch_stops_at_once_and_loses_nothing(kafka, alerts_dir, tmp_path, topic_prefix):
    records, values = real(alerts_dir, tmp_path)
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values)
    slow = write(tmp_path, "slow.py", "import time\ndef f(alert):\n    time.sleep(0.5)\n    return True\n")
    r = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        slow,
        tmp_path / "schemas",
        tmp_path / "run.log",
        "--no-visit-cap",
        "--batch-size",
        "50",
    )
    r.start()
    deadline = time.monotonic() + 60
    while "assigned" not in r.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # a few alerts into the 10 s batch
    t0 = time.monotonic()
    r.kill(signal.SIGTERM)
    assert r.wait(30) == 0, r.log()
    assert time.monotonic() - t0 < 5
    done = committed(kafka.bootstrap, inp, f"g-{out}")[0][0]
    assert 0 < done < 20, r.log()
    assert len(read_topic(kafka.bootstrap, out)) == done
    r2 = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        write(tmp_path, "fast.py", ACCEPT_ALL),
        tmp_path / "schemas",
        tmp_path / "run2.log",
        "--no-visit-cap",
    )
    assert r2.run_to_idle() == 0, r2.log()
    assert sorted(_decoded_ids(tmp_path, read_topic(kafka.bootstrap, out))) == sorted(a["diaSourceId"] for a in records)


def test_malformed_schema_file_is_retried_then_the_runner_exits_without_dead_lettering(
    kafka, alerts_dir, tmp_path, topic_prefix
):
    _records, values = real(alerts_dir, tmp_path)
    bad = tmp_path / "bad-schemas"
    bad.mkdir()
    (bad / "1000.avsc").write_text('{"type": "record", "name": "x", "fields": [')
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values[:3])
    r = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        write(tmp_path, "f.py", ACCEPT_ALL),
        bad,
        tmp_path / "run.log",
        "--schema-retries",
        "2",
    )
    assert r.run_to_idle(timeout=90) == 4, r.log()
    log = r.log()
    assert "retrying in 1 s (attempt 1 of 2)" in log and "retrying in 2 s (attempt 2 of 2)" in log
    assert f"the schema source cannot be used: schema file {bad / '1000.avsc'} (schema id 1000) cannot be used" in log
    assert read_topic(kafka.bootstrap, f"{out}.deadletter") == [] and read_topic(kafka.bootstrap, out) == []
    # no alert committed as processed: the alerts wait for a fix (the start position, the first
    # alert's offset, is committed at assignment)
    assert committed(kafka.bootstrap, inp, f"g-{out}")[0][0] <= 0


def test_healthz_stays_up_through_a_batch_slower_than_the_liveness_window(kafka, alerts_dir, tmp_path, topic_prefix):
    from alertfilter_devstack.procs import free_port

    _records, values = real(alerts_dir, tmp_path)
    inp, out = f"{topic_prefix}-alerts", f"{topic_prefix}-out"
    produce_values(kafka.bootstrap, inp, values[:15])
    slow = write(tmp_path, "slow.py", "import time\ndef f(alert):\n    time.sleep(0.4)\n    return True\n")
    port = free_port()
    r = RunnerProcess(
        kafka.bootstrap,
        inp,
        out,
        slow,
        tmp_path / "schemas",
        tmp_path / "run.log",
        "--no-visit-cap",
        "--batch-size",
        "50",
        "--liveness-window",
        "2",
    )
    r.args[r.args.index("--metrics-port") + 1] = str(port)
    r.start()
    try:
        deadline = time.monotonic() + 60
        while "assigned" not in r.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        statuses = []
        end = time.monotonic() + 5  # inside the 6 s batch
        while time.monotonic() < end:
            try:
                statuses.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            time.sleep(0.3)
        assert statuses and set(statuses) == {200}, (statuses, r.log())
    finally:
        r.kill(signal.SIGTERM)
        r.wait(30)
