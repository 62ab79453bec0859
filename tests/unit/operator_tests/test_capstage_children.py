"""What the operator builds for an exact cap with several replicas (issue #15): the candidates
topic, its ACLs, the runners' settings and how their pods are replaced; the name the contract keeps
for it; the reconciler keeping the topic once it exists."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

import kopf
import pytest

from alertfilter.candidates import CANDIDATES_PARTITIONS, cap_group
from alertfilter.settings import from_env
from alertfilter_operator import alertfilters
from alertfilter_operator.builders import (
    FilterRef,
    PoolInfo,
    build_candidates_topic,
    build_deployment,
    build_kafka_user,
    runner_env,
)
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.contract import Claims, output_topic_problem
from alertfilter_operator.naming import candidates_topic, cap_stage_group
from alertfilter_operator.state import State

from .conftest import SOURCE, filter_ref, namespace_body, pool_body
from .fake_kube import FakeKube
from .helpers import env_dict

NONE = Claims(frozenset({"alerts"}), frozenset(), frozenset({"sci", "af"}))


def staged(**spec: Any) -> FilterRef:
    return dataclasses.replace(filter_ref(**{"replicas": 3, "maxAlertsPerVisit": 5, **spec}), candidates=True)


def acls(user: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {
        (a["resource"]["type"], a["resource"]["name"]): sorted(a["operations"])
        for a in user["spec"]["authorization"]["acls"]
    }


def test_names_of_the_candidates_topic_and_the_cap_stage_group() -> None:
    ref = staged()
    assert ref.candidates_topic == candidates_topic("science", "bright") == "af.science.bright.candidates"
    assert ref.cap_group == cap_stage_group(ref.group) == cap_group(ref.group) == f"{ref.group}.cap"
    assert ref.owned_names()["candidatesTopic"] == "af.science.bright.candidates"
    assert ref.owned_names()["capStageGroup"] == f"{ref.group}.cap"
    assert "candidatesTopic" not in filter_ref().owned_names()


def test_the_candidates_topic(pool: PoolInfo) -> None:
    t = build_candidates_topic(staged(output={"retentionMs": 7 * 86_400_000, "partitions": 12}), pool)
    assert (t["kind"], t["metadata"]["name"], t["metadata"]["namespace"]) == (
        "KafkaTopic",
        "af.science.bright.candidates",
        "kafka-a",
    )
    spec = t["spec"]
    assert spec["topicName"] == "af.science.bright.candidates" and spec["partitions"] == CANDIDATES_PARTITIONS
    assert spec["config"]["retention.ms"] == 86_400_000  # a day at most
    assert spec["config"]["max.message.bytes"] == 4 * 1024 * 1024 + 64 * 1024
    assert t["metadata"]["labels"]["alerts.lsst.io/owner-uid"] == "uid-1"
    short = build_candidates_topic(staged(output={"retentionMs": 3_600_000}), pool)
    assert short["spec"]["config"]["retention.ms"] == 3_600_000


def test_the_filter_may_read_and_write_only_its_own_candidates_topic(pool: PoolInfo) -> None:
    ref = staged()
    got = acls(build_kafka_user(ref, pool))
    plain = acls(build_kafka_user(filter_ref(replicas=3), pool))
    assert {k: v for k, v in got.items() if k not in plain} == {
        ("topic", "af.science.bright.candidates"): ["Describe", "Read", "Write"],
        ("group", f"{ref.group}.cap"): ["Read"],
    }
    assert all(got[k] == v for k, v in plain.items())


@pytest.mark.parametrize(
    ("spec", "candidates", "env", "strategy"),
    [
        ({"replicas": 3, "maxAlertsPerVisit": 5}, True, {"CANDIDATES_TOPIC": "af.science.bright.candidates", "CAP_STAGE": "true"}, "Recreate"),
        ({"replicas": 1, "maxAlertsPerVisit": 5}, True, {"CANDIDATES_TOPIC": "af.science.bright.candidates", "CAP_STAGE": "false"}, "Recreate"),
        ({"replicas": 3, "maxAlertsPerVisit": 0}, True, {"CANDIDATES_TOPIC": "af.science.bright.candidates", "CAP_STAGE": "false"}, "Recreate"),
        ({"replicas": 1, "maxAlertsPerVisit": 5}, False, {}, "Recreate"),
        ({"replicas": 3, "maxAlertsPerVisit": 0}, False, {}, "RollingUpdate"),
    ],
)  # fmt: skip
def test_runner_settings_and_strategy(
    pool: PoolInfo, spec: dict[str, Any], candidates: bool, env: dict[str, str], strategy: str
) -> None:
    ref = dataclasses.replace(filter_ref(**spec), candidates=candidates)
    got = env_dict(runner_env(ref, pool))
    assert {k[len("ALERTFILTER_") :]: v for k, v in got.items() if "CANDIDATES" in k or "CAP_STAGE" in k} == env
    if env:  # the runner reads them back as the operator meant them
        parsed = from_env({k: v for k, v in got.items() if isinstance(v, str)})
        assert parsed["candidates_topic"] == env["CANDIDATES_TOPIC"] and parsed["cap_stage"] == (
            env["CAP_STAGE"] == "true"
        )
    assert build_deployment(ref, pool, "runner:1")["spec"]["strategy"]["type"] == strategy


@pytest.mark.parametrize(
    "topic",
    ["af.sci.bright.candidates", "af_sci_bright_candidates", "AF.Sci.x-1.Candidates", "af.other-ns.f.candidates"],
)
def test_no_output_topic_may_be_a_candidates_topic(topic: str) -> None:
    for ns in ("sci", "af"):
        problem = output_topic_problem(ns, "mine", {"output": {"topic": topic}}, NONE)
        assert problem is not None and "candidates topics" in problem
        assert output_topic_problem(ns, "mine", {"output": {"topic": topic}}, NONE, claimed=True) is not None


@pytest.mark.parametrize("topic", ["sci.candidates", "sci.bright.candidates.v2", "af.a.b.c.candidates"])
def test_other_names_ending_in_candidates_are_allowed(topic: str) -> None:
    assert (
        output_topic_problem(
            "sci", "mine", {"output": {"topic": topic}}, Claims(frozenset({"alerts"}), frozenset(), frozenset({"sci"}))
        )
        is None
    )


# --- the reconciler, on a fake API -----------------------------------------------------------------------------
LOG = logging.getLogger("test")


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([pool_body(), *(namespace_body(n) for n in ("kafka-a", "sci"))])


def _reconcile(kube: FakeKube, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": "bright", "namespace": "sci", "uid": "uid-b", "generation": 1},
        "spec": {"source": SOURCE, **spec},
    }
    kube.put(body)
    with contextlib.suppress(kopf.TemporaryError):
        alertfilters.reconcile(State(kube, OperatorConfig(runner_image="runner:test")), body, LOG, {})
    return kube.find("AlertFilter", "bright", "sci") or {}


def _env(kube: FakeKube) -> dict[str, Any]:
    dep = kube.find("Deployment", "af-bright", "sci")
    assert dep is not None
    return env_dict(dep["spec"]["template"]["spec"]["containers"][0]["env"])


def test_scaling_up_makes_the_topic_and_scaling_down_keeps_it(kube: FakeKube) -> None:
    af = _reconcile(kube, replicas=1, maxAlertsPerVisit=5)
    assert kube.find("KafkaTopic", "af.sci.bright.candidates", "kafka-a") is None
    assert "candidatesTopic" not in af["status"]["names"] and "ALERTFILTER_CANDIDATES_TOPIC" not in _env(kube)
    af = _reconcile(kube, replicas=3, maxAlertsPerVisit=5)
    assert kube.find("KafkaTopic", "af.sci.bright.candidates", "kafka-a") is not None
    assert af["status"]["names"]["candidatesTopic"] == "af.sci.bright.candidates"
    assert _env(kube)["ALERTFILTER_CAP_STAGE"] == "true"
    _reconcile(kube, replicas=1, maxAlertsPerVisit=5)  # the lone runner drains what the stages left
    assert kube.find("KafkaTopic", "af.sci.bright.candidates", "kafka-a") is not None
    env = _env(kube)
    assert env["ALERTFILTER_CANDIDATES_TOPIC"] == "af.sci.bright.candidates" and env["ALERTFILTER_CAP_STAGE"] == "false"
    af = _reconcile(kube, replicas=1, maxAlertsPerVisit=5)
    alertfilters.delete(State(kube, OperatorConfig(runner_image="runner:test")), af, LOG, {})
    assert kube.find("KafkaTopic", "af.sci.bright.candidates", "kafka-a") is None
