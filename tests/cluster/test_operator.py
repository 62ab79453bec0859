"""The operator against a real API server with Strimzi's CRDs (no Strimzi or Deployment controller
runs here: tests write the children's statuses themselves)."""

from __future__ import annotations

import base64
import json
from typing import Any

from .operator_harness import (
    alertfilter,
    apply_json,
    condition,
    get,
    make_pool,
    set_status,
    wait_condition,
    wait_for,
)

BAD_SOURCE = "def f(alert):\n    return alert['diaSource'['snr'] > 5\n"


def children(apiserver, ns: str, kns: str, name: str) -> dict[str, Any]:
    return {
        "configmap": get(apiserver, "configmap", f"af-{name}", ns),
        "deployment": get(apiserver, "deployment", f"af-{name}", ns),
        "networkpolicy": get(apiserver, "networkpolicy", f"af-{name}", ns),
        "topic": get(apiserver, "kafkatopic", f"af.{ns}.{name}.output", kns),
        "dlq": get(apiserver, "kafkatopic", f"af.{ns}.{name}.deadletter", kns),
        "user": get(apiserver, "kafkauser", f"af.{ns}.{name}", kns),
    }


def wait_children(apiserver, ns, kns, name, timeout=60):
    return wait_for(
        lambda: (c := children(apiserver, ns, kns, name)) and all(c.values()) and c,
        timeout,
        f"the children of {ns}/{name}",
    )


def test_create_builds_every_child_accepted_by_the_schemas(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("bright", pool=pname, maxAlertsPerVisit=5), namespace)
    c = wait_children(apiserver, namespace, kns, "bright")
    assert "class BrightSignificant" in c["configmap"]["data"]["filter.py"]
    t = c["topic"]["spec"]
    assert t["topicName"] == f"{namespace}.bright" and t["partitions"] == 1 and t["replicas"] == 3
    assert t["config"]["max.message.bytes"] == 4194304
    assert c["topic"]["metadata"]["labels"]["strimzi.io/cluster"] == f"{pname}-kafka"
    assert c["dlq"]["spec"]["topicName"] == f"{namespace}.bright.deadletter"
    acls = {
        (a["resource"]["type"], a["resource"].get("name")): sorted(a["operations"])
        for a in c["user"]["spec"]["authorization"]["acls"]
    }
    uid = get(apiserver, "alertfilter", "bright", namespace)["metadata"]["uid"]
    assert acls == {
        ("topic", "alerts"): ["Describe", "Read"],  # the originals of accepted lean alerts
        ("topic", "alerts.lean"): ["Describe", "Read"],  # it reads no cutout: the pool's lean stream
        ("group", f"alertfilter.{namespace}.bright.{uid}"): ["Read"],
        ("topic", f"{namespace}.bright"): ["Describe", "Write"],
        ("topic", f"{namespace}.bright.deadletter"): ["Describe", "Write"],
        ("transactionalId", f"alertfilter-alertfilter.{namespace}.bright.{uid}"): ["Describe", "Write"],
    }
    pod = c["deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"alerts.lsst.io/pool": pname}
    assert pod["tolerations"][0]["value"] == pname
    assert pod["automountServiceAccountToken"] is False
    ctr = pod["containers"][0]
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    assert env["ALERTFILTER_MAX_ALERTS_PER_VISIT"] == "5" and env["ALERTFILTER_INPUT"] == "alerts.lean"
    assert env["ALERTFILTER_FULL_TOPIC"] == "alerts"
    assert env["ALERTFILTER_BOOTSTRAP_SERVERS"] == f"{pname}-kafka-kafka-bootstrap.{kns}.svc:9092"
    owner = c["deployment"]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "AlertFilter" and owner["name"] == "bright"
    # the pool's children
    assert get(apiserver, "kafka", f"{pname}-kafka", kns)
    assert get(apiserver, "kafkanodepool", f"{pname}-kafka-nodes", kns)
    mm2 = get(apiserver, "kafkamirrormaker2", f"{pname}-kafka-mirror", kns)
    assert mm2["spec"]["mirrors"][0]["topicsPattern"] == "alerts"
    assert (
        "IdentityReplicationPolicy"
        in mm2["spec"]["mirrors"][0]["sourceConnector"]["config"]["replication.policy.class"]
    )
    # the pool's lean stream: its topic, its producer's user and Deployment, accepted by the schemas
    lean_topic = get(apiserver, "kafkatopic", f"{pname}-kafka-lean-topic", kns)
    assert lean_topic["spec"]["topicName"] == "alerts.lean"
    lean_user = get(apiserver, "kafkauser", f"{pname}-kafka-lean", kns)
    writes = [a for a in lean_user["spec"]["authorization"]["acls"] if "Write" in a["operations"]]
    assert [a["resource"]["name"] for a in writes] == ["alerts.lean"]
    lean = get(apiserver, "deployment", f"{pname}-kafka-lean", kns)
    assert lean["spec"]["template"]["spec"]["containers"][0]["args"] == ["lean"]
    af = get(apiserver, "alertfilter", "bright", namespace)
    assert af["status"]["pool"] == pname and af["status"]["outputTopic"] == f"{namespace}.bright"
    assert af["status"]["inputTopic"] == "alerts.lean" and af["status"]["inputStream"].startswith("lean:")
    assert condition(af, "SourceValid")["status"] == "True"


def test_status_progresses_as_children_become_ready(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("prog", pool=pname), namespace)
    c = wait_children(apiserver, namespace, kns, "prog")
    af = get(apiserver, "alertfilter", "prog", namespace)
    assert condition(af, "Ready")["status"] != "True"
    # Strimzi's User Operator creates the user's secret; the operator copies it next to the runner
    apiserver.kubectl(
        "create", "secret", "generic", f"af.{namespace}.prog", "-n", kns, "--from-literal=password=s3cret"
    )
    secret = wait_for(lambda: get(apiserver, "secret", "af-prog-kafka", namespace), 60, "the credentials copy")
    assert base64.b64decode(secret["data"]["password"]) == b"s3cret"
    ready = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    set_status(apiserver, "kafkatopic", f"af.{namespace}.prog.output", kns, ready)
    set_status(apiserver, "kafkatopic", f"af.{namespace}.prog.deadletter", kns, ready)
    wait_condition(apiserver, "alertfilter", "prog", namespace, "TopicReady", status="True", timeout=30)
    gen = c["deployment"]["metadata"]["generation"]
    set_status(
        apiserver,
        "deployment",
        "af-prog",
        namespace,
        {"observedGeneration": gen, "replicas": 1, "availableReplicas": 1, "updatedReplicas": 1, "readyReplicas": 1},
    )
    af = wait_condition(apiserver, "alertfilter", "prog", namespace, "Ready", status="True", timeout=30)
    assert condition(af, "RunnerReady")["reason"] == "Available"
    assert af["status"]["observedGeneration"] == af["metadata"]["generation"]
    events = apiserver.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "SourceValid=True" in events and "Ready=True" in events
    out = apiserver.kubectl("get", "alertfilters", "-n", namespace).stdout
    assert "True" in out.splitlines()[1] and pname in out


def test_source_update_rolls_the_runner_and_keeps_the_topic(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("roll", pool=pname), namespace)
    before = wait_children(apiserver, namespace, kns, "roll")
    old_hash = before["deployment"]["spec"]["template"]["metadata"]["annotations"]["alerts.lsst.io/source-sha256"]
    new_source = "def bright(alert):\n    return alert['diaSource']['snr'] > 50\n"
    apply_json(apiserver, alertfilter("roll", new_source, pool=pname), namespace)

    def rolled():
        d = get(apiserver, "deployment", "af-roll", namespace)
        return d["spec"]["template"]["metadata"]["annotations"]["alerts.lsst.io/source-sha256"] != old_hash and d

    wait_for(rolled, 60, "the pod template to change")
    after = children(apiserver, namespace, kns, "roll")
    assert after["configmap"]["data"]["filter.py"] == new_source
    assert after["topic"]["metadata"]["uid"] == before["topic"]["metadata"]["uid"]  # same topic, data kept


def test_webhook_rejects_a_source_that_does_not_compile(apiserver, operator, pool, namespace):
    r = apply_json(apiserver, alertfilter("bad", BAD_SOURCE, pool=pool[0]), namespace, check=False)
    assert r.returncode != 0
    assert "line 2, column" in r.stderr and "syntax error" in r.stderr, r.stderr
    assert get(apiserver, "alertfilter", "bad", namespace) is None


def test_suspend_scales_to_zero_and_keeps_the_topic(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("sleepy", pool=pname), namespace)
    before = wait_children(apiserver, namespace, kns, "sleepy")
    apply_json(apiserver, alertfilter("sleepy", pool=pname, suspend=True), namespace)
    wait_for(lambda: get(apiserver, "deployment", "af-sleepy", namespace)["spec"]["replicas"] == 0, 60, "replicas 0")
    assert (
        get(apiserver, "kafkatopic", f"af.{namespace}.sleepy.output", kns)["metadata"]["uid"]
        == before["topic"]["metadata"]["uid"]
    )
    wait_for(
        lambda: (
            condition(get(apiserver, "alertfilter", "sleepy", namespace), "RunnerReady").get("reason") == "Suspended"
        ),
        30,
        "RunnerReady reason Suspended",
    )


def test_delete_removes_every_child_and_a_second_delete_is_harmless(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("gone", pool=pname), namespace)
    wait_children(apiserver, namespace, kns, "gone")
    body = get(apiserver, "alertfilter", "gone", namespace)
    apiserver.kubectl("delete", "alertfilter", "gone", "-n", namespace, "--timeout=60s")
    wait_for(lambda: not any(children(apiserver, namespace, kns, "gone").values()), 60, "every child to go")
    # the delete handler again, on the same body: nothing left to delete, nothing breaks
    import logging

    import kubernetes

    from alertfilter_operator import alertfilters
    from alertfilter_operator.config import OperatorConfig
    from alertfilter_operator.kube import Kube
    from alertfilter_operator.state import State

    client = kubernetes.config.new_client_from_config(str(apiserver.kubeconfig))
    alertfilters.delete(State(Kube(client), OperatorConfig()), body, logging.getLogger("test"), {})
    assert not any(children(apiserver, namespace, kns, "gone").values())


def test_placement_fills_pools_and_reports_unschedulable(apiserver, operator, namespace):
    small, _ = make_pool(apiserver, capacity=(1, 2))
    for i in range(2):
        apply_json(apiserver, alertfilter(f"p{i}", pool=small), namespace)
    wait_for(lambda: (get(apiserver, "filterpool", small)["status"] or {}).get("used") == 2, 60, "the pool to fill")
    apply_json(apiserver, alertfilter("p-over", pool=small), namespace)
    af = wait_condition(apiserver, "alertfilter", "p-over", namespace, "Ready", reason="Unschedulable")
    assert "is full" in condition(af, "Ready")["message"]
    assert get(apiserver, "deployment", "af-p-over", namespace) is None
    pool = get(apiserver, "filterpool", small)
    assert pool["status"]["free"] == 0 and pool["status"]["capacity"] == 2


def test_unplaced_filters_go_to_the_pool_with_most_room(apiserver, operator, namespace):
    # other tests' pools exist too; a new roomy pool must win
    roomy, _ = make_pool(apiserver, capacity=(100, 100))
    apply_json(apiserver, alertfilter("anywhere"), namespace)
    af = wait_for(
        lambda: (
            (a := get(apiserver, "alertfilter", "anywhere", namespace)) and (a.get("status") or {}).get("pool") and a
        ),
        60,
        "placement",
    )
    assert af["status"]["pool"] == roomy


def test_pool_deletion_waits_for_its_filters(apiserver, operator, namespace):
    pname, kns = make_pool(apiserver)
    apply_json(apiserver, alertfilter("tenant", pool=pname), namespace)
    wait_children(apiserver, namespace, kns, "tenant")
    apiserver.kubectl("delete", "filterpool", pname, "--wait=false")

    def refused() -> list[dict[str, Any]]:  # `kubectl describe filterpool` shows this event
        out = apiserver.kubectl("get", "events", "-n", "default", "-o", "json").stdout
        return [
            e
            for e in json.loads(out)["items"]
            if e["involvedObject"].get("name") == pname and e["reason"] == "PoolInUse"
        ]

    (event, *_) = wait_for(refused, 60, "the operator to refuse deleting the pool")
    assert event["type"] == "Warning"
    assert event["message"] == f"1 AlertFilter(s) still run in this pool ({namespace}/tenant); delete them first"
    assert get(apiserver, "filterpool", pname) is not None  # held by the finalizer
    assert get(apiserver, "kafka", f"{pname}-kafka", kns) is not None
    apiserver.kubectl("delete", "alertfilter", "tenant", "-n", namespace, "--timeout=60s")
    wait_for(lambda: get(apiserver, "filterpool", pname) is None, 90, "the pool to go once empty")
    wait_for(lambda: get(apiserver, "kafka", f"{pname}-kafka", kns) is None, 30, "the pool's Kafka to go")
