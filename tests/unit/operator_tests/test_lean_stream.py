"""A FilterPool's lean stream as the operator builds and owns it, and which stream each filter reads:
the lean topic, its producer's KafkaUser (least ACLs) and Deployment, LeanStreamReady, routing and
the filters' ACLs (they only read the lean topic), and the contract (no filter may write it)."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from alertfilter_operator import alertfilters, pools
from alertfilter_operator.builders import PoolInfo, build_kafka_user, runner_env
from alertfilter_operator.builders.lean import (
    DEFAULT_LEAN_RESOURCES,
    build_lean_deployment,
    build_lean_topic,
    build_lean_user,
)
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.contract import claims_of, output_topic_problem
from alertfilter_operator.state import State

from .conftest import filter_ref, pool_spec
from .fake_kube import FakeKube

LOG = logging.getLogger("test")
CUTOUT_READER = "def f(alert):\n    return alert['cutoutScience'] is not None\n"


def test_the_lean_topic_has_the_pools_partitions_and_room_for_a_whole_alert() -> None:
    topic = build_lean_topic("pool-a", "uid-p", pool_spec(lean={"partitions": 4}))
    assert (topic["kind"], topic["metadata"]["name"], topic["metadata"]["namespace"]) == (
        "KafkaTopic",
        "pool-a-kafka-lean-topic",
        "kafka-a",
    )
    assert topic["spec"]["topicName"] == "alerts.lean" and topic["spec"]["partitions"] == 4
    assert topic["spec"]["config"]["max.message.bytes"] > 10 * 1024 * 1024
    assert topic["metadata"]["labels"]["alerts.lsst.io/owner-uid"] == "uid-p"
    assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "pool-a-kafka"
    assert build_lean_topic("p", "u", pool_spec(lean={"topic": "lean.x"}))["spec"]["topicName"] == "lean.x"


def test_the_lean_producer_may_read_the_full_stream_and_write_only_the_lean_topic() -> None:
    user = build_lean_user("pool-a", "uid-p", pool_spec())
    assert user["metadata"]["name"] == "pool-a-kafka-lean"
    acls = {
        (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"], tuple(a["operations"]))
        for a in user["spec"]["authorization"]["acls"]
    }
    assert acls == {
        ("topic", "alerts", "literal", ("Read", "Describe")),
        ("group", "pool-a-kafka-lean.uid-p", "literal", ("Read",)),
        ("topic", "alerts.lean", "literal", ("Write", "Describe")),
    }


def _env(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_the_lean_producer_is_the_runner_image_running_alertfilter_lean_on_the_pools_nodes() -> None:
    dep = build_lean_deployment("pool-a", "uid-p", pool_spec(), "b:9092", "runner:1", "http://reg:8081")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert (c["image"], c["args"], dep["spec"]["replicas"]) == ("runner:1", ["lean"], 1)
    assert c["resources"] == DEFAULT_LEAN_RESOURCES  # the place the density benchmark's figures go
    assert pod["nodeSelector"] == {"alerts.lsst.io/pool": "pool-a"} and pod["tolerations"]
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    env = _env(dep)
    assert env["ALERTFILTER_INPUT"] == "alerts" and env["ALERTFILTER_LEAN_TOPIC"] == "alerts.lean"
    assert (
        env["ALERTFILTER_GROUP"] == "pool-a-kafka-lean.uid-p"
        and env["ALERTFILTER_SCHEMA_REGISTRY"] == "http://reg:8081"
    )
    assert env["ALERTFILTER_KAFKA_SASL_USERNAME"] == "pool-a-kafka-lean"
    assert env["ALERTFILTER_KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": "pool-a-kafka-lean", "key": "password"}}
    assert dep["metadata"]["labels"]["alerts.lsst.io/owner-kind"] == "FilterPool"
    custom = {"requests": {"cpu": "100m", "memory": "256Mi"}}
    spec = pool_spec(lean={"resources": custom})
    assert (
        build_lean_deployment("p", "u", spec, "b", "r")["spec"]["template"]["spec"]["containers"][0]["resources"]
        == custom
    )


def test_a_disabled_lean_stream_has_no_topic_to_build() -> None:
    with pytest.raises(ValueError, match="disabled"):
        build_lean_topic("p", "u", pool_spec(lean={"enabled": False}))
    assert PoolInfo.from_spec("p", pool_spec(lean={"enabled": False})).lean_topic is None


def _acls(user: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (a["resource"]["type"], a["resource"]["name"], tuple(a["operations"]))
        for a in user["spec"]["authorization"]["acls"]
    }


def test_a_lean_filter_reads_the_lean_topic_and_fetches_originals_from_the_full_stream() -> None:
    pool = PoolInfo.from_spec("pool-a", pool_spec())
    lean, full = filter_ref(), filter_ref()
    lean = type(lean)(lean.namespace, lean.name, lean.uid, lean.spec, lean.source_sha256, lean=True)
    env = {e["name"]: e.get("value") for e in runner_env(lean, pool)}
    assert (env["ALERTFILTER_INPUT"], env["ALERTFILTER_FULL_TOPIC"]) == ("alerts.lean", "alerts")
    env = {e["name"]: e.get("value") for e in runner_env(full, pool)}
    assert env["ALERTFILTER_INPUT"] == "alerts" and "ALERTFILTER_FULL_TOPIC" not in env
    reads = {(t, n, ops) for t, n, ops in _acls(build_kafka_user(lean, pool)) if t == "topic" and "Read" in ops}
    assert reads == {("topic", "alerts", ("Read", "Describe")), ("topic", "alerts.lean", ("Read", "Describe"))}
    assert not [n for t, n, ops in _acls(build_kafka_user(lean, pool)) if n == "alerts.lean" and "Write" in ops]
    assert ("topic", "alerts.lean", ("Read", "Describe")) not in _acls(build_kafka_user(full, pool))


def test_no_filter_may_take_a_pools_lean_topic_as_its_output() -> None:
    pools_ = [
        {"spec": {"mirror": {"topic": "alerts"}}},
        {"spec": {"mirror": {"topic": "b"}, "lean": {"topic": "b-lean"}}},
    ]
    claims = claims_of([], pools_, [], exclude=None)
    for topic in ("alerts.lean", "b-lean", "ALERTS_lean"):
        problem = output_topic_problem("sci", "f", {"output": {"topic": topic}}, claims)
        assert problem and "lean topic" in problem, topic
    # with the lean stream off too: a filter holding the name would write what lean filters read
    # once it is turned on (and keep Write on it with its own KafkaUser)
    off = [{"spec": {"mirror": {"topic": "alerts"}, "lean": {"enabled": False}}},
           {"spec": {"mirror": {"topic": "c"}, "lean": {"enabled": False, "topic": "c.thin"}}}]  # fmt: skip
    for topic in ("alerts.lean", "c.lean", "c.thin"):
        problem = output_topic_problem("sci", "f", {"output": {"topic": topic}}, claims_of([], off, [], exclude=None))
        assert problem and "lean topic" in problem, topic


# --- reconciling -------------------------------------------------------------------------------
def _pool(**overrides: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "FilterPool",
        "metadata": {"name": "pool-a", "uid": "uid-pool-a", "generation": 1},
        "spec": pool_spec(capacity={"nodes": 1, "filtersPerNode": 4}, **overrides).model_dump(by_alias=True),
    }


def _filter(name: str, source: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": name, "namespace": "sci", "uid": f"uid-{name}", "generation": 1},
        "spec": {"source": source, **spec},
    }


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([_pool(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka-a"}}])


@pytest.fixture
def state(kube: FakeKube) -> State:
    return State(kube, OperatorConfig(runner_image="runner:test", schema_registry="http://reg:8081"))


def _lean_ready(kube: FakeKube) -> tuple[str, str, str]:
    pool = kube.find("FilterPool", "pool-a") or {}
    c = next(c for c in pool["status"]["conditions"] if c["type"] == "LeanStreamReady")
    return c["status"], c["reason"], c["message"]


def test_the_pool_owns_its_lean_stream_and_says_when_it_is_ready(kube: FakeKube, state: State) -> None:
    pools.reconcile(state, _pool(), LOG, {})
    for kind, name in [
        ("KafkaTopic", "pool-a-kafka-lean-topic"),
        ("KafkaUser", "pool-a-kafka-lean"),
        ("Deployment", "pool-a-kafka-lean"),
    ]:
        assert kube.find(kind, name, "kafka-a") is not None, kind
    assert (kube.find("FilterPool", "pool-a") or {})["status"]["leanTopic"] == "alerts.lean"
    assert _lean_ready(kube)[0] == "Unknown"
    topic = kube.find("KafkaTopic", "pool-a-kafka-lean-topic", "kafka-a") or {}
    topic["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    kube.put(topic)
    dep = kube.find("Deployment", "pool-a-kafka-lean", "kafka-a") or {}
    dep["status"] = {"availableReplicas": 1, "updatedReplicas": 1, "observedGeneration": 0}
    kube.put(dep)
    pools.refresh_pool_status(state, "pool-a", {})
    assert _lean_ready(kube)[:2] == ("True", "Ready")
    # switched off: the producer, its user and the topic go, and nothing reads it any more
    pools.reconcile(state, _pool(lean={"enabled": False}), LOG, {})
    kube.put(_pool(lean={"enabled": False}))
    pools.refresh_pool_status(state, "pool-a", {})
    assert kube.find("Deployment", "pool-a-kafka-lean", "kafka-a") is None
    assert kube.find("KafkaTopic", "pool-a-kafka-lean-topic", "kafka-a") is None
    assert _lean_ready(kube)[:2] == ("True", "Disabled")
    assert (kube.find("FilterPool", "pool-a") or {})["status"].get("leanTopic") is None


def test_deleting_the_pool_deletes_its_lean_stream(kube: FakeKube, state: State) -> None:
    pools.reconcile(state, _pool(), LOG, {})
    pools.delete(state, _pool(), LOG, {})
    assert [k for k in kube.objects if k[0] in ("deployments", "kafkatopics", "kafkausers")] == []


@pytest.mark.parametrize(
    ("source", "spec", "topic", "stream"),
    [
        ("def f(alert):\n    return alert['diaSource']['snr'] > 5\n", {}, "alerts.lean", "lean: its inferred fields"),
        (CUTOUT_READER, {}, "alerts", "full: its inferred fields include a cutout"),
        (
            "def f(alert):\n    return bool(alert)\n",
            {},
            "alerts",
            "full: the fields the filter reads cannot be inferred",
        ),
        (
            "def f(alert):\n    return alert['diaSource']['snr'] > 5\n",
            {"stream": "full"},
            "alerts",
            "full: spec.stream is full",
        ),
    ],
)
def test_status_says_which_stream_a_filter_reads(kube: FakeKube, state: State, source, spec, topic, stream) -> None:
    pools.reconcile(state, _pool(), LOG, {})
    kube.put(_filter("f", source, **spec))
    with pytest.raises(kopf.TemporaryError, match="credentials"):
        alertfilters.reconcile(state, _filter("f", source, **spec), LOG, {})
    st = (kube.find("AlertFilter", "f", "sci") or {})["status"]
    assert st["inputTopic"] == topic and st["inputStream"].startswith(stream)
    dep = kube.find("Deployment", "af-f", "sci") or {}
    assert _env(dep)["ALERTFILTER_INPUT"] == topic


def test_a_pool_without_a_lean_stream_keeps_every_filter_on_the_full_stream(kube: FakeKube, state: State) -> None:
    kube.put(_pool(lean={"enabled": False}))
    pools.reconcile(state, _pool(lean={"enabled": False}), LOG, {})
    src = "def f(alert):\n    return alert['diaSource']['snr'] > 5\n"
    kube.put(_filter("f", src))
    with pytest.raises(kopf.TemporaryError):
        alertfilters.reconcile(state, _filter("f", src), LOG, {})
    st = (kube.find("AlertFilter", "f", "sci") or {})["status"]
    assert st["inputTopic"] == "alerts" and st["inputStream"] == "full: FilterPool 'pool-a' has no lean stream"
