"""The reconcilers against a fake API: what a user sees on the AlertFilter, the FilterPool and
their children after each step (the same flows run against a real API server in tests/cluster)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import kopf
import pytest

from alertfilter_operator import alertfilters, pools
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.placement import FilterKey, Placement
from alertfilter_operator.state import State

from .conftest import SOURCE, pool_spec
from .fake_kube import FakeKube

LOG = logging.getLogger("test")


def _filter(name: str = "bright", source: str = SOURCE, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": name, "namespace": "sci", "uid": f"uid-{name}", "generation": 1},
        "spec": {"source": source, **spec},
    }


def _pool(name: str = "pool-a", nodes: int = 1, per_node: int = 2) -> dict[str, Any]:
    spec = pool_spec(capacity={"nodes": nodes, "filtersPerNode": per_node}).model_dump(by_alias=True)
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "FilterPool",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


def _index(book: dict[FilterKey, Placement]) -> dict[FilterKey, list[Placement]]:
    return {k: [v] for k, v in book.items()}


def _conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in ((obj or {}).get("status") or {}).get("conditions", [])}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([_pool(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka-a"}}])


@pytest.fixture
def state(kube: FakeKube) -> State:
    return State(kube, OperatorConfig(runner_image="runner:test"))


def test_a_new_filter_gets_every_child_and_waits_for_its_credentials(kube: FakeKube, state: State) -> None:
    kube.put(_filter())
    with pytest.raises(kopf.TemporaryError, match="credentials"):
        alertfilters.reconcile(state, _filter(), LOG, {})
    for kind, name, ns in [
        ("ConfigMap", "af-bright", "sci"),
        ("Deployment", "af-bright", "sci"),
        ("NetworkPolicy", "af-bright", "sci"),
        ("KafkaTopic", "af.sci.bright.output", "kafka-a"),
        ("KafkaTopic", "af.sci.bright.deadletter", "kafka-a"),
        ("KafkaUser", "af.sci.bright", "kafka-a"),
    ]:
        assert kube.find(kind, name, ns) is not None, (kind, name)
    af = kube.find("AlertFilter", "bright", "sci") or {}
    assert af["status"]["pool"] == "pool-a" and af["status"]["outputTopic"] == "sci.bright"
    assert _conditions(af)["SourceValid"] == ("True", "Valid")
    assert _conditions(af)["RunnerReady"] == ("False", "WaitingForCredentials")
    assert _conditions(af)["Ready"][0] != "True"
    assert (kube.find("FilterPool", "pool-a") or {})["status"]["used"] == 1
    assert kube.find("Deployment", "af-bright", "sci")["metadata"]["ownerReferences"][0]["uid"] == "uid-bright"  # type: ignore[index]


def test_once_strimzi_made_the_password_the_runner_gets_a_copy(kube: FakeKube, state: State) -> None:
    kube.put(_filter())
    password = base64.b64encode(b"s3cret").decode()
    kube.put({"apiVersion": "v1", "kind": "Secret", "data": {"password": password},
              "metadata": {"name": "af.sci.bright", "namespace": "kafka-a"}})  # fmt: skip
    alertfilters.reconcile(state, _filter(), LOG, {})
    secret = kube.find("Secret", "af-bright-kafka", "sci") or {}
    assert secret["stringData"]["password"] == "s3cret"
    # the runner exists now; no pod is available yet
    assert _conditions(kube.find("AlertFilter", "bright", "sci"))["RunnerReady"] == ("False", "Unavailable")


def test_an_invalid_source_removes_the_runner_and_says_where(kube: FakeKube, state: State) -> None:
    kube.put(_filter(source="def f(alert):\n    return alert[\n"))
    owned = {
        "name": "af-bright",
        "namespace": "sci",
        "uid": "d1",
        "ownerReferences": [{"uid": "uid-bright", "controller": True}],
    }
    kube.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": owned})
    alertfilters.reconcile(state, _filter(), LOG, {})
    af = kube.find("AlertFilter", "bright", "sci") or {}
    assert kube.find("Deployment", "af-bright", "sci") is None
    assert _conditions(af)["SourceValid"] == ("False", "SourceError")
    assert _conditions(af)["Ready"] == ("False", "SourceError")
    assert af["status"]["sourceError"]["line"] == 2
    assert "line 2, column" in next(c["message"] for c in af["status"]["conditions"] if c["type"] == "SourceValid")


def test_a_full_pool_makes_the_filter_unschedulable(kube: FakeKube, state: State) -> None:
    kube.put(_filter("third", pool="pool-a"))
    full = _index({("sci", "one"): ("pool-a", 1), ("sci", "two"): ("pool-a", 1)})
    with pytest.raises(kopf.TemporaryError, match="unschedulable"):
        alertfilters.reconcile(state, _filter("third", pool="pool-a"), LOG, full)
    af = kube.find("AlertFilter", "third", "sci") or {}
    assert _conditions(af)["Ready"] == ("False", "Unschedulable")
    assert "is full (2/2 runner pods used, 1 needed)" in af["status"]["conditions"][-1]["message"]
    assert kube.find("Deployment", "af-third", "sci") is None


def test_a_decision_not_yet_in_the_index_still_takes_room(kube: FakeKube, state: State) -> None:
    for name in ("one", "two", "three"):
        kube.put(_filter(name))
    for name in ("one", "two"):  # the index has seen neither yet
        with pytest.raises(kopf.TemporaryError, match="credentials"):
            alertfilters.reconcile(state, _filter(name), LOG, {})
    with pytest.raises(kopf.TemporaryError, match="unschedulable"):
        alertfilters.reconcile(state, _filter("three"), LOG, {})


def test_delete_removes_every_child_and_gives_the_room_back(kube: FakeKube, state: State) -> None:
    kube.put(_filter())
    with pytest.raises(kopf.TemporaryError):
        alertfilters.reconcile(state, _filter(), LOG, {})
    placed = kube.find("AlertFilter", "bright", "sci") or {}
    alertfilters.delete(state, placed, LOG, _index({("sci", "bright"): ("pool-a", 1)}))
    assert [k for k in kube.objects if k[0] not in ("filterpools", "namespaces", "alertfilters")] == []
    assert (kube.find("FilterPool", "pool-a") or {})["status"]["used"] == 0
    alertfilters.delete(state, placed, LOG, {})  # a second delete finds nothing and breaks nothing


def test_a_pool_waits_for_its_kafka_namespace_then_builds_its_kafka(kube: FakeKube, state: State) -> None:
    del kube.objects[("namespaces", "", "kafka-a")]
    with pytest.raises(kopf.TemporaryError, match="namespace kafka-a does not exist"):
        pools.reconcile(state, _pool(), LOG, {})
    assert _conditions(kube.find("FilterPool", "pool-a"))["Ready"] == ("False", "NamespaceNotFound")
    kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kafka-a"}})
    pools.reconcile(state, _pool(), LOG, {})
    for kind, name in [
        ("Kafka", "pool-a-kafka"),
        ("KafkaNodePool", "pool-a-kafka-nodes"),
        ("KafkaUser", "pool-a-kafka-mirror"),
        ("KafkaMirrorMaker2", "pool-a-kafka-mirror"),
    ]:
        assert kube.find(kind, name, "kafka-a") is not None, kind
    pool = kube.find("FilterPool", "pool-a") or {}
    assert _conditions(pool)["Ready"] == ("Unknown", "Pending")
    assert (pool["status"]["capacity"], pool["status"]["free"]) == (2, 2)


def test_a_pool_is_not_deleted_while_filters_run_in_it(kube: FakeKube, state: State) -> None:
    pools.reconcile(state, _pool(), LOG, {})
    busy = _index({("sci", "f1"): ("pool-a", 1)})
    with pytest.raises(kopf.TemporaryError, match=r"1 AlertFilter\(s\) still run in this pool \(sci/f1\)"):
        pools.delete(state, _pool(), LOG, busy)
    assert kube.find("Kafka", "pool-a-kafka", "kafka-a") is not None
    pools.delete(state, _pool(), LOG, {})
    assert kube.find("Kafka", "pool-a-kafka", "kafka-a") is None


def _runner_bootstrap(kube: FakeKube, name: str) -> str:
    dep = kube.find("Deployment", f"af-{name}", "sci") or {}
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "ALERTFILTER_BOOTSTRAP_SERVERS"))


def test_when_the_pool_kafka_moves_its_filters_runners_follow(kube: FakeKube, state: State) -> None:
    pools.reconcile(state, _pool(), LOG, {})
    kube.put(_filter())
    with pytest.raises(kopf.TemporaryError, match="credentials"):
        alertfilters.reconcile(state, _filter(), LOG, {})
    assert _runner_bootstrap(kube, "bright") == "pool-a-kafka-kafka-bootstrap.kafka-a.svc:9092"
    index = _index({("sci", "bright"): ("pool-a", 1)})
    assert not pools.refresh_pool_status(state, "pool-a", index)  # nothing moved yet
    kafka = kube.find("Kafka", "pool-a-kafka", "kafka-a") or {}
    kafka["status"] = {"listeners": [{"name": "plain", "bootstrapServers": "10.1.2.3:9092"}]}
    kube.put(kafka)
    assert pools.refresh_pool_status(state, "pool-a", index)
    alertfilters.follow_pool(state, "pool-a", LOG, index)
    assert _runner_bootstrap(kube, "bright") == "10.1.2.3:9092"
    assert (kube.find("AlertFilter", "bright", "sci") or {})["status"]["bootstrapServers"] == "10.1.2.3:9092"


def test_a_resync_puts_back_a_child_deleted_by_hand(kube: FakeKube, state: State) -> None:
    kube.put(_filter())
    with pytest.raises(kopf.TemporaryError):
        alertfilters.reconcile(state, _filter(), LOG, {})
    del kube.objects[("networkpolicies", "sci", "af-bright")]
    alertfilters.resync(state, "sci", "bright", LOG, _index({("sci", "bright"): ("pool-a", 1)}))  # logs, never raises
    assert kube.find("NetworkPolicy", "af-bright", "sci") is not None
    alertfilters.resync(state, "sci", "gone", LOG, {})  # a filter deleted meanwhile: nothing to do


def test_one_filter_failing_does_not_keep_the_pool_s_others_from_following_it(
    kube: FakeKube, state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("broken", "bright"):
        kube.put(_filter(name))
    seen: list[str] = []

    def reconcile(state: State, body: dict[str, Any], logger: Any, index: Any) -> None:
        seen.append(body["metadata"]["name"])
        if body["metadata"]["name"] == "broken":
            raise OverflowError("date value out of range")

    monkeypatch.setattr(alertfilters, "reconcile", reconcile)
    index = _index({("sci", "broken"): ("pool-a", 1), ("sci", "bright"): ("pool-a", 1)})
    alertfilters.follow_pool(state, "pool-a", LOG, index)
    assert sorted(seen) == ["bright", "broken"]
