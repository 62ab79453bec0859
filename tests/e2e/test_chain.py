"""End to end on the local stack: kubectl apply → operator → Strimzi stand-in → MirrorMaker 2 →
filter-runner processes on process nodes → output topics, on the real alerts.

The expectations are computed here, directly from the alerts decoded with fastavro, without the
runtime's code.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import time
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from alertfilter.codecs import read_container

ROOT = Path(__file__).resolve().parents[2]
NS = "science"
MAG20_NJY = 10 ** ((31.4 - 20) / 2.5)
CAP = 20


@pytest.fixture(scope="module")
def devstack(tmp_path_factory, alerts_dir):
    d = tmp_path_factory.mktemp("devstack")
    old = os.environ.get("DEVSTACK_DIR")
    os.environ["DEVSTACK_DIR"] = str(d)
    from alertfilter_devstack import stack

    try:
        st = stack.up()
    except Exception as exc:  # noqa: BLE001
        stack.down(quiet=True)
        pytest.fail(f"devstack did not come up: {exc}")
    yield st, stack.control_plane(), d
    stack.down(purge=False, quiet=True)
    if old is None:
        os.environ.pop("DEVSTACK_DIR", None)
    else:
        os.environ["DEVSTACK_DIR"] = old


def wait_for(pred, timeout, what, interval=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read(bootstrap: str, topic: str, start: int = 0) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{time.time_ns()}", "enable.partition.eof": True,
                  "isolation.level": "read_committed", "log_level": 3})
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        c.close()
        return []
    c.assign([TopicPartition(topic, p, start if start else -2) for p in md.partitions])
    out, eof, idle = [], set(), time.monotonic()
    while len(eof) < len(md.partitions) and time.monotonic() - idle < 10:
        for m in c.consume(500, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            idle = time.monotonic()
            out.append(m)
    c.close()
    return out


def decode(values: list[bytes], schema: dict) -> list[dict]:
    parsed = fastavro.parse_schema(schema)
    return [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]


def expected(alerts: list[dict], keep, raises=lambda a: False) -> tuple[list[int], list[int]]:
    """(accepted ids with the per-visit cap, ids that make the filter raise), in stream order."""
    counts, ids, errors = {}, [], []
    for a in alerts:
        if raises(a):
            errors.append(a["diaSourceId"])
            continue
        if keep(a):
            v = a["diaSource"]["visit"]
            if counts.get(v, 0) < CAP:
                counts[v] = counts.get(v, 0) + 1
                ids.append(a["diaSourceId"])
    return ids, errors


def bright(a):
    s = a["diaSource"]
    return not math.isnan(s["snr"]) and s["snr"] > 5 and s["psfFlux"] is not None and s["psfFlux"] > MAG20_NJY


def reliable_i(a):
    s = a["diaSource"]
    return s["band"] == "i" and s["reliability"] is not None and s["reliability"] > 0.8 and (s["psfFlux"] or 0) > 0


def known(a):
    return a["diaObject"]["nDiaSources"] > 1


def no_object(a):
    return a["diaObject"] is None


FILTERS = {"bright-significant": (bright, lambda a: False), "reliable-i-band": (reliable_i, lambda a: False),
           "known-objects": (known, no_object)}


def ids_of(msgs, schema) -> list[int]:
    return [a["diaSourceId"] for a in decode([m.value() for m in msgs], schema)]


def consumed(cp, name: str) -> float:
    import urllib.request

    pods = json.loads(cp.kubectl("get", "pods", "-n", NS, "-l", f"alerts.lsst.io/filter={name}", "-o", "json").stdout)["items"]
    total = 0.0
    for p in pods:
        port = (p["metadata"].get("annotations") or {}).get("devstack.alerts.lsst.io/metrics-port")
        if not port or (p.get("status") or {}).get("phase") != "Running":
            continue
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            continue
        total += sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("alertfilter_alerts_consumed_total"))
    return total


def produce_batch(st, alerts_dir, copies: int, first_visit: int, per_visit: int = 60):
    from alertfilter.tools import produce

    return produce(st["kafka_central"]["bootstrap"], "alerts",
                   [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"],
                   copies=copies, alerts_per_visit=per_visit, cadence_s=0.2, first_visit=first_visit,
                   first_id=first_visit * 1000, write_schema_dir=st["schema_dir"], out=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def schema(alerts_dir):
    return read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))[0]


def test_filters_accept_exactly_the_expected_alerts(devstack, alerts_dir, schema):
    st, cp, _ = devstack
    cp.kubectl("apply", "-f", st["filterpool"])
    for name in FILTERS:
        cp.kubectl("apply", "-n", NS, "-f", str(ROOT / "examples" / f"alertfilter-{name}.yaml"))
    wait_for(lambda: all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in (a.get("status") or {}).get("conditions", []))
        for a in json.loads(cp.kubectl("get", "alertfilters", "-n", NS, "-o", "json").stdout)["items"])
        and len(json.loads(cp.kubectl("get", "alertfilters", "-n", NS, "-o", "json").stdout)["items"]) == 3,
        180, "the three filters to be Ready")
    res = produce_batch(st, alerts_dir, copies=10, first_visit=1000, per_visit=240)  # 30 reliable i-band per visit
    pool = st["kafka_pool"]["bootstrap"]
    wait_for(lambda: all(consumed(cp, n) >= res.alerts for n in FILTERS), 240, "every runner to consume the stream")
    stream = decode([m.value() for m in read(pool, "alerts")], schema)
    assert len(stream) == res.alerts
    for name, (keep, raises) in FILTERS.items():
        want, errors = expected(stream, keep, raises)
        got = ids_of(read(pool, f"{NS}.{name}"), schema)
        assert got == want, name
        dlq = read(pool, f"{NS}.{name}.deadletter")
        assert [int(dict(m.headers())["alertfilter.alert-id"]) for m in dlq] == errors, name
        if errors:
            assert {dict(m.headers())["alertfilter.error.reason"] for m in dlq} == {b"filter-exception"}
            assert b"TypeError" in dict(dlq[0].headers())["alertfilter.error.message"]
    assert len(expected(stream, reliable_i)[0]) < sum(map(reliable_i, stream))  # the cap did bite


def test_the_webhook_rejects_and_the_status_reports_an_invalid_filter(devstack):
    st, cp, _ = devstack
    r = cp.kubectl("apply", "-n", NS, "-f", str(ROOT / "examples" / "alertfilter-broken-syntax.yaml"), check=False)
    assert r.returncode != 0 and "line 6, column 17" in r.stderr
    # with the webhook gone (it can be off), the reconcile reports the same in the status
    cp.kubectl("delete", "validatingwebhookconfiguration", "alertfilters.alerts.lsst.io")
    cp.kubectl("apply", "-n", NS, "-f", str(ROOT / "examples" / "alertfilter-broken-syntax.yaml"))
    af = wait_for(lambda: (a := json.loads(cp.kubectl("get", "alertfilter", "broken-syntax", "-n", NS, "-o", "json").stdout))
                  and (a.get("status") or {}).get("sourceError") and a, 60, "the status to report the error")
    assert af["status"]["sourceError"]["line"] == 6 and af["status"]["sourceError"]["column"] == 17
    assert cp.kubectl("get", "deployment", "af-broken-syntax", "-n", NS, check=False).returncode != 0
    cp.kubectl("delete", "alertfilter", "broken-syntax", "-n", NS, "--wait=true", "--timeout=60s")


def test_editing_a_filter_changes_what_it_accepts_and_keeps_its_topic(devstack, alerts_dir, schema):
    st, cp, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    before = ids_of(read(pool, f"{NS}.bright-significant"), schema)
    old_pods = set(cp.kubectl("get", "pods", "-n", NS, "-l", "alerts.lsst.io/filter=bright-significant", "-o", "name").stdout.split())
    manifest = json.loads(cp.kubectl("get", "alertfilter", "bright-significant", "-n", NS, "-o", "json").stdout)
    new_source = "def negative(alert):\n    return (alert['diaSource']['psfFlux'] or 0) < 0\n"
    cp.kubectl("patch", "alertfilter", "bright-significant", "-n", NS, "--type=merge",
               "-p", json.dumps({"spec": {"source": new_source}}))
    wait_for(lambda: (now := set(cp.kubectl("get", "pods", "-n", NS, "-l", "alerts.lsst.io/filter=bright-significant",
                                           "--field-selector=status.phase=Running", "-o", "name").stdout.split()))
             and not (now & old_pods) and consumed(cp, "bright-significant") is not None and now, 120, "the runner to roll")
    wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in json.loads(
        cp.kubectl("get", "alertfilter", "bright-significant", "-n", NS, "-o", "json").stdout)["status"]["conditions"]),
        120, "the edited filter to be Ready")
    start = len(read(pool, "alerts"))
    res = produce_batch(st, alerts_dir, copies=5, first_visit=2000)
    wait_for(lambda: consumed(cp, "bright-significant") >= res.alerts, 240, "the new runner to consume the new alerts")
    new_stream = decode([m.value() for m in read(pool, "alerts", start)], schema)
    after = ids_of(read(pool, f"{NS}.bright-significant"), schema)
    assert after[: len(before)] == before  # the topic kept what it had
    assert after[len(before):] == expected(new_stream, lambda a: (a["diaSource"]["psfFlux"] or 0) < 0)[0]
    assert manifest["status"]["outputTopic"] == f"{NS}.bright-significant"


def test_deleting_a_filter_stops_its_process_and_removes_its_topic(devstack):
    st, cp, d = devstack
    pool = st["kafka_pool"]["bootstrap"]
    cp.kubectl("delete", "alertfilter", "reliable-i-band", "-n", NS, "--wait=true", "--timeout=90s")

    def runner_processes():
        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if "af-reliable-i-band" in line or
                (str(d) in line and "ALERTFILTER_NAME=reliable-i-band" in line)]
    wait_for(lambda: cp.kubectl("get", "pods", "-n", NS, "-l", "alerts.lsst.io/filter=reliable-i-band", "-o", "name").stdout.strip() == "",
             90, "the runner pod to go")
    wait_for(lambda: f"{NS}.reliable-i-band" not in Consumer({"bootstrap.servers": pool, "group.id": "x", "log_level": 3})
             .list_topics(timeout=10).topics, 60, "the output topic to be deleted")
    # process nodes run pods in their folder: no runner of the deleted filter is left
    pods_dirs = list(d.glob("nodes/*/pods/science_af-reliable-i-band*"))
    assert pods_dirs, "the runner never ran on a process node"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert not [ln for ln in ps.splitlines() if any(str(p) in ln for p in pods_dirs)]


def test_devstack_down_leaves_no_process_behind(devstack):
    st, cp, d = devstack
    from alertfilter_devstack import stack

    pids = [st["operator"], st["standin"], *st["nodes"].values(), *st["controlplane"]["pids"].values(),
            st["kafka_central"]["pid"], st["kafka_pool"]["pid"]]
    stack.down(quiet=True)
    time.sleep(1)
    alive = [p for p in pids if subprocess.run(["kill", "-0", str(p)], capture_output=True).returncode == 0]
    assert not alive, f"processes left: {alive}"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    left = [ln for ln in ps.splitlines() if str(d) in ln]
    assert not left, f"processes left: {left}"
