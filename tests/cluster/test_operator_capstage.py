"""Issue #15, an exact cap at any number of replicas: what the operator applies on a real API server
(with Strimzi's CRDs and the operator's webhook) for a filter with a cap and several replicas, as it
scales down and when it is deleted; and the candidates topic's name refused to anyone's output."""

from __future__ import annotations

import json
import uuid

from .operator_harness import alertfilter, apply_json, condition, get, set_status, wait_condition, wait_for


def _env(apiserver, name: str, ns: str) -> dict[str, str]:
    dep = get(apiserver, "deployment", f"af-{name}", ns)
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_several_replicas_get_a_candidates_topic_and_a_cap_stage(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("many", pool=pname, replicas=3, maxAlertsPerVisit=5), namespace)
    topic_name = f"af.{namespace}.many.candidates"
    topic = wait_for(lambda: get(apiserver, "kafkatopic", topic_name, kns), 60, "the candidates KafkaTopic")
    assert topic["spec"]["topicName"] == topic_name and topic["spec"]["partitions"] == 3
    assert topic["spec"]["config"]["retention.ms"] <= 86_400_000
    af = wait_for(
        lambda: (a := get(apiserver, "alertfilter", "many", namespace)) and (a.get("status") or {}).get("names") and a,
        60,
        "the filter's names",
    )
    group = af["status"]["names"]["consumerGroup"]
    assert af["status"]["names"]["candidatesTopic"] == topic_name
    assert af["status"]["names"]["capStageGroup"] == f"{group}.cap"
    user = wait_for(lambda: get(apiserver, "kafkauser", f"af.{namespace}.many", kns), 60, "the KafkaUser")
    acls = {
        (a["resource"]["type"], a["resource"]["name"]): sorted(a["operations"])
        for a in user["spec"]["authorization"]["acls"]
    }
    assert acls[("topic", topic_name)] == ["Describe", "Read", "Write"] and acls[("group", f"{group}.cap")] == ["Read"]
    dep = wait_for(lambda: get(apiserver, "deployment", "af-many", namespace), 60, "the Deployment")
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["strategy"] == {"type": "Recreate"}
    env = _env(apiserver, "many", namespace)
    assert env["ALERTFILTER_CANDIDATES_TOPIC"] == topic_name and env["ALERTFILTER_CAP_STAGE"] == "true"
    # TopicReady waits for all three topics
    for role in ("output", "deadletter", "candidates"):
        ready = {"conditions": [{"type": "Ready", "status": "True"}]}
        set_status(apiserver, "kafkatopic", f"af.{namespace}.many.{role}", kns, ready)
    af = wait_condition(apiserver, "alertfilter", "many", namespace, "TopicReady", status="True")
    assert condition(af, "TopicReady")["message"] == "the output, dead-letter and candidates KafkaTopics are ready"

    # one replica: the runner caps in its process, after forwarding what the stages left
    patch = json.dumps({"spec": {"replicas": 1}})
    apiserver.kubectl("patch", "alertfilter", "many", "-n", namespace, "--type=merge", "-p", patch)
    wait_for(lambda: _env(apiserver, "many", namespace).get("ALERTFILTER_CAP_STAGE") == "false", 60, "one replica")
    assert get(apiserver, "kafkatopic", topic_name, kns) is not None
    assert _env(apiserver, "many", namespace)["ALERTFILTER_CANDIDATES_TOPIC"] == topic_name

    apiserver.kubectl("delete", "alertfilter", "many", "-n", namespace)
    wait_for(lambda: get(apiserver, "kafkatopic", topic_name, kns) is None, 60, "the candidates topic deleted")


def test_one_replica_has_no_candidates_topic(apiserver, operator, pool, namespace):
    pname, kns = pool
    apply_json(apiserver, alertfilter("one", pool=pname, maxAlertsPerVisit=5), namespace)
    wait_for(lambda: get(apiserver, "deployment", "af-one", namespace), 60, "the Deployment")
    assert get(apiserver, "kafkatopic", f"af.{namespace}.one.candidates", kns) is None
    assert "ALERTFILTER_CANDIDATES_TOPIC" not in _env(apiserver, "one", namespace)


def test_a_candidates_topic_name_is_refused_as_an_output_topic(apiserver, operator, pool, namespace):
    pname, _ = pool
    victim = f"v-{uuid.uuid4().hex[:6]}"
    for topic in (f"af.{victim}.many.candidates", f"AF_{victim}_many_candidates"):
        r = apply_json(apiserver, alertfilter("claimer", pool=pname, output={"topic": topic}), namespace, check=False)
        assert r.returncode != 0 and "spec.output.topic" in r.stderr and "candidates topics" in r.stderr, r.stderr
