"""End to end on the kind cluster: kubectl apply → the operator (in the cluster, installed by the
Helm chart) → Strimzi stand-in → MirrorMaker 2 → filter-runner pods placed by the scheduler on
pool-a's nodes → output topics, on the real alerts.

The expectations are computed here, directly from the alerts decoded with fastavro, without the
runtime's code.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import uuid
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer

from alertfilter.codecs import read_container

from .conftest import condition, consumed, end_offset, produce_batch, read, runner_pods, wait_for

ROOT = Path(__file__).resolve().parents[2]
MAG20_NJY = 10 ** ((31.4 - 20) / 2.5)
CAP = 20


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


@pytest.fixture(scope="module")
def schema(alerts_dir):
    return read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))[0]


@pytest.fixture(scope="module")
def ns(devstack):
    """The chain's namespace (restricted Pod Security Standard), shared by this module's tests in order."""
    from alertfilter_devstack.stack import RESTRICTED

    _, cluster, _ = devstack
    name = f"e2e-chain-{uuid.uuid4().hex[:4]}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_filters_accept_exactly_the_expected_alerts(devstack, ns, alerts_dir, schema):
    st, cp, _ = devstack
    for name in FILTERS:
        cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / f"alertfilter-{name}.yaml"))
    wait_for(lambda: all(condition(cp, ns, n, "Ready").get("status") == "True" for n in FILTERS), 300,
             "the three filters to be Ready")
    pool = st["kafka_pool"]["bootstrap"]
    start = end_offset(pool, "alerts")  # new filters start here (spec.startFrom: latest, the default)
    res = produce_batch(st, alerts_dir, copies=10, first_visit=1000, per_visit=240)  # 30 reliable i-band per visit
    mirrored = wait_for(lambda: (got := read(pool, "alerts", start)) and len(got) >= res.alerts and got, 240,
                        "the mirror")
    stream = decode([m.value() for m in mirrored], schema)
    wait_for(lambda: all(consumed(cp, ns, n) >= len(stream) for n in FILTERS), 300, "every runner to consume the stream")
    for name, (keep, raises) in FILTERS.items():
        want, errors = expected(stream, keep, raises)
        got = ids_of(read(pool, f"{ns}.{name}"), schema)
        assert got == want, name
        dlq = read(pool, f"{ns}.{name}.deadletter")
        assert [int(dict(m.headers())["alertfilter.alert-id"]) for m in dlq] == errors, name
        if errors:
            assert {dict(m.headers())["alertfilter.error.reason"] for m in dlq} == {b"filter-exception"}
            assert b"TypeError" in dict(dlq[0].headers())["alertfilter.error.message"]
    assert len(expected(stream, reliable_i)[0]) < sum(map(reliable_i, stream))  # the cap did bite


def test_runner_pods_are_real_containers_on_the_pools_nodes_and_kubectl_logs_works(devstack, ns):
    _, cp, _ = devstack
    nodes = {n["metadata"]["name"]: n["metadata"]["labels"] for n in cp.get_json("nodes")["items"]}
    for name in FILTERS:
        pods = runner_pods(cp, ns, name)
        assert pods, name
        for p in pods:
            assert nodes[p["spec"]["nodeName"]].get("alerts.lsst.io/pool") == "pool-a"
            cs = p["status"]["containerStatuses"][0]
            assert cs["containerID"].startswith("containerd://") and cs["image"].endswith("alertfilter-runner:0.1.0")
    log = cp.kubectl("logs", "-n", ns, "deployment/af-bright-significant", "--tail=200").stdout
    assert log.strip(), "kubectl logs of a runner printed nothing"


def test_the_webhook_rejects_and_the_status_reports_an_invalid_filter(devstack, ns):
    _, cp, _ = devstack
    r = cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "alertfilter-broken-syntax.yaml"), check=False)
    assert r.returncode != 0 and "line 6, column 17" in r.stderr
    # the webhook is reached through the chart's Service, in the cluster
    hook = cp.get_json("validatingwebhookconfiguration", "alertfilters.alerts.lsst.io")["webhooks"][0]
    assert hook["clientConfig"]["service"]["namespace"] == "kafka"
    # with the webhook gone (it can be off), the reconcile reports the same in the status
    cp.kubectl("delete", "validatingwebhookconfiguration", "alertfilters.alerts.lsst.io")
    try:
        cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "alertfilter-broken-syntax.yaml"))
        af = wait_for(lambda: (a := cp.get_json("alertfilter", "broken-syntax", "-n", ns))
                      and (a.get("status") or {}).get("sourceError") and a, 60, "the status to report the error")
        assert af["status"]["sourceError"]["line"] == 6 and af["status"]["sourceError"]["column"] == 17
        assert cp.kubectl("get", "deployment", "af-broken-syntax", "-n", ns, check=False).returncode != 0
        cp.kubectl("delete", "alertfilter", "broken-syntax", "-n", ns, "--wait=true", "--timeout=60s")
    finally:
        # the operator makes its webhook configuration at start; wait until the new pod answers
        cp.kubectl("-n", "kafka", "rollout", "restart", "deployment/alert-filter-alert-filter-operator")
        cp.kubectl("-n", "kafka", "rollout", "status", "deployment/alert-filter-alert-filter-operator", "--timeout=180s")
        wait_for(lambda: cp.kubectl("apply", "--dry-run=server", "-n", ns, "-f",
                                    str(ROOT / "examples" / "alertfilter-bright-significant.yaml"),
                                    check=False).returncode == 0, 180, "the restarted operator's webhook to answer")


def test_editing_a_filter_rolls_its_pod_and_keeps_its_topic(devstack, ns, alerts_dir, schema):
    st, cp, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    before = ids_of(read(pool, f"{ns}.bright-significant"), schema)
    old_pods = {p["metadata"]["name"] for p in runner_pods(cp, ns, "bright-significant", running=False)}
    new_source = "def negative(alert):\n    return (alert['diaSource']['psfFlux'] or 0) < 0\n"
    cp.kubectl("patch", "alertfilter", "bright-significant", "-n", ns, "--type=merge",
               "-p", json.dumps({"spec": {"source": new_source}}))
    wait_for(lambda: (now := {p["metadata"]["name"] for p in runner_pods(cp, ns, "bright-significant")})
             and not (now & old_pods), 240, "the runner pod to roll")
    wait_for(lambda: condition(cp, ns, "bright-significant", "Ready").get("status") == "True", 120,
             "the edited filter to be Ready")
    start = end_offset(pool, "alerts")
    res = produce_batch(st, alerts_dir, copies=5, first_visit=2000)
    wait_for(lambda: end_offset(pool, "alerts") >= start + res.alerts, 240, "the mirror")
    wait_for(lambda: consumed(cp, ns, "bright-significant") >= res.alerts, 300, "the new runner to consume the new alerts")
    new_stream = decode([m.value() for m in read(pool, "alerts", start)], schema)
    after = ids_of(read(pool, f"{ns}.bright-significant"), schema)
    assert after[: len(before)] == before  # the topic kept what it had
    assert after[len(before):] == expected(new_stream, lambda a: (a["diaSource"]["psfFlux"] or 0) < 0)[0]
    assert cp.get_json("alertfilter", "bright-significant", "-n", ns)["status"]["outputTopic"] == f"{ns}.bright-significant"


def test_deleting_a_filter_removes_its_pods_and_topics(devstack, ns):
    st, cp, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    cp.kubectl("delete", "alertfilter", "reliable-i-band", "-n", ns, "--wait=true", "--timeout=120s")
    wait_for(lambda: not runner_pods(cp, ns, "reliable-i-band", running=False), 120, "the runner pod to go")
    def topics() -> dict:
        return Consumer({"bootstrap.servers": pool, "group.id": "x", "log_level": 3}).list_topics(timeout=10).topics

    wait_for(lambda: f"{ns}.reliable-i-band" not in topics(), 90, "the output topic to be deleted")
    assert f"{ns}.reliable-i-band.deadletter" not in topics()
    # no container of the deleted filter is left in any node's containerd (the kubelet removes a
    # deleted pod's containers shortly after the pod object goes)
    def nodes_with_its_containers() -> list[str]:
        left = []
        for node in (n["metadata"]["name"] for n in cp.get_json("nodes")["items"]):
            ps = subprocess.run(["docker", "exec", node, "ctr", "-n", "k8s.io", "containers", "ls",
                                 f'labels."io.kubernetes.pod.namespace"=={ns}'], capture_output=True, text=True)
            assert ps.returncode == 0, ps.stderr
            for cid in [line.split()[0] for line in ps.stdout.splitlines()[1:]]:
                info = subprocess.run(["docker", "exec", node, "ctr", "-n", "k8s.io", "containers", "info", cid],
                                      capture_output=True, text=True).stdout
                if "af-reliable-i-band" in info:
                    left.append(node)
        return left

    wait_for(lambda: not nodes_with_its_containers(), 180, "the deleted filter's containers to be removed")
