"""Lean streams end to end on the kind cluster: the FilterPool's lean producer pod (the runner image
running ``alertfilter lean``, deployed and owned by the operator) copies the mirrored stream to
``alerts.lean`` with the cutouts null; a filter that reads no cutout is routed there, one that reads a
cutout (or asks with ``spec.stream: full``) reads the full stream; and the same filter's outputs on
the two paths are the same, message by message, byte for byte."""

from __future__ import annotations

import json
import uuid

import pytest

from alertfilter_devstack import kafkaprobe as probe

from .conftest import apply_filter, committed_to_end, end_offset, produce_batch, read, wait_for
from .test_kafka_acls import identity

LEAN = "alerts.lean"
CUT = "def cut(alert):\n    return alert['diaSource']['snr'] > 5.5\n"
CUTOUT = "def sized(alert):\n    return len(alert['cutoutScience'] or b'') > 1000 and alert['diaSource']['snr'] > 6\n"


def pool_condition(cp, ctype: str) -> dict:
    st = cp.get_json("filterpool", "pool-a").get("status") or {}
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), {})


@pytest.fixture(scope="module")
def lean_ns(devstack):
    from alertfilter_devstack.stack import RESTRICTED

    _, cp, _ = devstack
    ns = f"e2e-lean-{uuid.uuid4().hex[:4]}"
    cp.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": RESTRICTED}}))  # fmt: skip
    yield ns
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_pool_runs_its_lean_producer(devstack):
    st, cp, _ = devstack
    wait_for(lambda: pool_condition(cp, "LeanStreamReady").get("status") == "True", 300, "LeanStreamReady")
    assert cp.get_json("filterpool", "pool-a")["status"]["leanTopic"] == LEAN
    dep = cp.get_json("deployment", "pool-a-kafka-lean", "-n", "kafka")
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"] == ["lean"]
    assert dep["metadata"]["labels"]["alerts.lsst.io/owner-kind"] == "FilterPool"


def test_routing_and_the_same_outputs_on_the_lean_and_the_full_path(devstack, lean_ns, alerts_dir):
    st, cp, _ = devstack
    ns, pool = lean_ns, st["kafka_pool"]["bootstrap"]
    apply_filter(cp, ns, "on-lean", CUT, ready=False)
    apply_filter(cp, ns, "on-full", CUT, ready=False, stream="full")
    apply_filter(cp, ns, "cutouts", CUTOUT, ready=False)
    for name in ("on-lean", "on-full", "cutouts"):
        wait_for(lambda n=name: any(c["type"] == "Ready" and c["status"] == "True" for c in (
            cp.get_json("alertfilter", n, "-n", ns).get("status") or {}).get("conditions", [])), 300, f"{name} Ready")
    status = {n: cp.get_json("alertfilter", n, "-n", ns)["status"] for n in ("on-lean", "on-full", "cutouts")}
    assert status["on-lean"]["inputTopic"] == LEAN and status["on-lean"]["inputStream"].startswith("lean:")
    assert status["on-full"]["inputTopic"] == "alerts" and "spec.stream is full" in status["on-full"]["inputStream"]
    assert status["cutouts"]["inputTopic"] == "alerts" and "cutout" in status["cutouts"]["inputStream"]
    table = cp.kubectl("get", "alertfilters", "-n", ns).stdout
    assert "INPUT" in table and LEAN in table

    ids = {n: identity(st, cp, ns, n) for n in ("on-lean", "on-full")}
    lean_id = ids["on-lean"]
    assert probe.read(lean_id["config"], LEAN, lean_id["group"]) == probe.OK
    assert probe.write(lean_id["config"], LEAN) == "TOPIC_AUTHORIZATION_FAILED"  # filters only read it
    assert probe.write(lean_id["config"], "alerts") == "TOPIC_AUTHORIZATION_FAILED"

    starts = {t: end_offset(pool, t) for t in ("alerts", LEAN)}
    res = produce_batch(st, alerts_dir, copies=4, first_visit=int(uuid.uuid4().int % 10**6) + 5000, per_visit=48)
    wait_for(lambda: all(end_offset(pool, t) >= starts[t] + res.alerts for t in starts), 300,
             "the mirror and the lean producer to copy the new alerts")  # fmt: skip
    wait_for(lambda: committed_to_end(pool, ids["on-full"]["group"], "alerts")
             and committed_to_end(pool, lean_id["group"], LEAN), 300, "both runners to reach the ends")  # fmt: skip
    full_out, lean_out = read(pool, f"{ns}.on-full"), read(pool, f"{ns}.on-lean")
    assert full_out, "the filter accepted nothing: the comparison would prove nothing"

    def record(m) -> tuple:
        headers = [(k, v) for k, v in m.headers() or [] if k != "alertfilter.filter"]  # the filters' names differ
        return m.value(), m.key(), headers

    assert [record(m) for m in lean_out] == [record(m) for m in full_out]
    assert all(len(m.value()) > 30_000 for m in lean_out)  # originals, cutouts and all
    out = cp.raw("/api/v1/namespaces/kafka/pods/"
                 + cp.get_json("pods", "-n", "kafka", "-l", "app.kubernetes.io/component=lean")["items"][0]["metadata"]["name"]
                 + ":8080/proxy/metrics")  # fmt: skip
    assert any(line.startswith("alertfilter_lean_alerts_out_total") and float(line.split()[-1]) > 0
               for line in out.splitlines())  # fmt: skip
