"""Issue #12, data loss and hijack: names a filter owns are its own, and a filter can never take
another's topic, a pool's input or an internal topic (the rules of contract.py, and the reconciler
refusing again what admission would have refused)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any

import kopf
import pytest

from alertfilter_operator import alertfilters
from alertfilter_operator.builders import FilterRef
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.contract import Claims, claims_of, output_topic_problem, pool_change_problem
from alertfilter_operator.models import AlertFilterSpec
from alertfilter_operator.ownership import NameConflict, apply_owned, conflict
from alertfilter_operator.state import State

from .conftest import SOURCE, namespace_body, pool_body
from .fake_kube import FakeKube

LOG = logging.getLogger("test")
NONE = Claims(frozenset({"alerts"}), frozenset(), frozenset())

# Pairs that once shared children: '-' joins (sci/x-y, sci-x/y), a suffix that is also a name
# (c1 and c1-dlq), and long names cut to the same prefix.
ADVERSARIAL = [
    ("sci", "x-y"),
    ("sci-x", "y"),
    ("sci", "c1"),
    ("sci", "c1-dlq"),
    ("sci", "c1-deadletter"),
    ("sci", "c1-output"),
    ("a", "b-c-d"),
    ("a-b", "c-d"),
    ("a-b-c", "d"),
    ("long", "n" * 63),
    ("long", "n" * 62 + "m"),
    ("long-" + "n" * 58, "x"),
]


def _ref(namespace: str, name: str, uid: str = "uid-1", **spec: Any) -> FilterRef:
    return FilterRef(namespace, name, uid, AlertFilterSpec.model_validate({"source": SOURCE, **spec}), "ab")


def test_no_two_filters_share_a_name_of_any_kind() -> None:
    owners: dict[tuple[str, str], tuple[str, str]] = {}
    for ns, name in ADVERSARIAL:
        ref = _ref(ns, name, uid=f"uid-{ns}-{name}")
        names = ref.owned_names()
        scoped = {  # (scope, name): where a name must be unique
            ("topic", names["outputTopic"]),
            ("topic", names["deadLetterTopic"]),
            ("group", names["consumerGroup"]),
            ("kafka-namespace", names["kafkaUser"]),
            ("kafka-namespace", names["outputKafkaTopic"]),
            ("kafka-namespace", names["deadLetterKafkaTopic"]),
            ("namespace:" + ns, names["runner"]),
            ("namespace:" + ns, names["credentialsSecret"]),
        }
        for key in scoped:
            assert key not in owners, f"{ns}/{name} and {owners[key]} share {key}"
            owners[key] = (ns, name)


def test_the_kafka_topic_and_user_resources_differ_for_sci_x_y_and_sci_x_slash_y() -> None:
    a, b = _ref("sci", "x-y"), _ref("sci-x", "y")
    assert a.output_topic_resource != b.output_topic_resource and a.kafka_user != b.kafka_user
    assert (a.output_topic, b.output_topic) == ("sci.x-y", "sci-x.y")


def test_a_filter_created_again_under_the_same_name_gets_a_new_consumer_group() -> None:
    old, new = _ref("sci", "bright", uid="uid-old"), _ref("sci", "bright", uid="uid-new")
    assert old.group != new.group and old.transactional_id_prefix != new.transactional_id_prefix
    assert new.group.startswith("alertfilter.sci.bright.")


@pytest.mark.parametrize(
    ("topic", "words"),
    [
        ("alerts", "input topic"),
        ("alerts.deadletter"[:-11], "input topic"),
        ("__consumer_offsets", "internal topic"),
        ("mm2-offset-syncs.central.internal", "internal topic"),
        ("central.checkpoints.internal", "internal topic"),
        ("heartbeats", "internal topic"),
        ("sci.bright.deadletter", "dead-letter topics"),
        ("..", "not a legal Kafka topic name"),
        ("bad topic", "not a legal Kafka topic name"),
        ("t" * 239, "at most 238"),
        ("other.stolen", "belong to namespace 'other'"),
    ],
)
def test_an_output_topic_that_is_not_the_filter_s_to_take_is_refused(topic: str, words: str) -> None:
    claims = Claims(frozenset({"alerts"}), frozenset(), frozenset({"sci", "other"}))
    problem = output_topic_problem("sci", "mine", {"output": {"topic": topic}}, claims)
    assert problem is not None and problem.startswith("spec.output.topic") and words in problem


def test_another_filter_s_output_or_dead_letter_topic_is_refused_as_kafka_compares_names() -> None:
    victim = {"metadata": {"namespace": "sci", "name": "victim", "uid": "v"}, "spec": {"source": SOURCE}}
    claims = claims_of([victim], [{"spec": {"mirror": {"topic": "alerts"}}}], ["sci", "evil"], exclude=("evil", "x"))
    for topic in ("sci.victim", "sci_victim", "sci.victim.deadletter"[:-11], "sci.victim_deadletter"[:-11]):
        problem = output_topic_problem("evil", "x", {"output": {"topic": topic}}, claims)
        assert problem is not None, topic
    # a custom topic whose dead-letter topic is the victim's output: "sci" is refused by the prefix
    # rule, and the same shape inside one's own namespace by the collision rule
    mine = {"metadata": {"namespace": "evil", "name": "a", "uid": "a"}, "spec": {"source": SOURCE}}
    claims = claims_of([mine], [], ["evil"], exclude=("evil", "b"))
    assert output_topic_problem("evil", "b", {"output": {"topic": "evil.a"}}, claims)
    assert output_topic_problem("evil", "b", {"output": {"topic": "evil.b-own"}}, claims) is None
    # the filter itself is not its own competitor
    assert output_topic_problem("evil", "a", {}, claims_of([mine], [], ["evil"], exclude=("evil", "a"))) is None


def test_a_legal_topic_of_any_name_outside_other_namespaces_is_allowed() -> None:
    for topic in ("bright-transients", "sci.x", "t" * 238, "lsst.sn-candidates"):
        assert output_topic_problem("sci", "x", {"output": {"topic": topic}}, NONE) is None


def test_a_pool_can_be_corrected_until_the_filter_runs_in_one() -> None:
    assert pool_change_problem("pool-typo", "pool-a", None) is None
    assert pool_change_problem(None, "pool-a", None) is None
    problem = pool_change_problem("pool-a", "pool-b", "pool-a")
    assert problem is not None and "runs in FilterPool 'pool-a'" in problem
    assert pool_change_problem(None, "pool-b", "pool-a") is not None  # placed by the operator, then named
    assert pool_change_problem("pool-a", None, "pool-a") is None  # dropping the field keeps it where it is


def test_an_object_of_another_owner_or_none_is_never_written() -> None:
    kube = FakeKube([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "af-x", "namespace": "sci"}}])
    mine = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "af-x", "namespace": "sci"}, "data": {}}
    with pytest.raises(NameConflict, match="was not created for this filter"):
        apply_owned(kube, mine, "uid-1")
    other = {"metadata": {"name": "n", "ownerReferences": [{"uid": "uid-2", "controller": True}]}, "kind": "Secret"}
    assert conflict(other, "uid-1") is not None and conflict(other, "uid-2") is None
    assert conflict({"metadata": {"labels": {"alerts.lsst.io/owner-uid": "uid-1"}}}, "uid-1") is None


# --- the reconciler ------------------------------------------------------------------------------
def _filter(name: str, ns: str = "sci", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "generation": 1},
        "spec": {"source": SOURCE, **spec},
    }


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([pool_body(), *(namespace_body(n) for n in ("kafka-a", "sci", "evil"))])


@pytest.fixture
def state(kube: FakeKube) -> State:
    return State(kube, OperatorConfig(runner_image="runner:test"))


def _reconcile(state: State, kube: FakeKube, body: dict[str, Any]) -> dict[str, Any]:
    kube.put(body)
    with contextlib.suppress(kopf.TemporaryError):
        alertfilters.reconcile(state, body, LOG, {})
    return kube.find("AlertFilter", body["metadata"]["name"], body["metadata"]["namespace"]) or {}


def _ready(af: dict[str, Any]) -> tuple[str, str, str]:
    c = next(c for c in af["status"]["conditions"] if c["type"] == "Ready")
    return c["status"], c["reason"], c["message"]


def test_a_filter_admitted_without_the_webhook_cannot_take_another_s_topic(state: State, kube: FakeKube) -> None:
    _reconcile(state, kube, _filter("victim", output={"topic": "bright.transients"}))
    victim_topic = kube.find("KafkaTopic", "af.sci.victim.output", "kafka-a")
    assert victim_topic is not None
    claimer = _reconcile(state, kube, _filter("claimer", ns="evil", output={"topic": "Bright_Transients"}))
    status, reason, message = _ready(claimer)
    assert (status, reason) == ("False", "NameConflict") and "held by another KafkaTopic" in message
    assert (
        kube.find("Deployment", "af-claimer", "evil") is None
        and kube.find("KafkaUser", "af.evil.claimer", "kafka-a") is None
    )
    assert kube.find("KafkaTopic", "af.sci.victim.output", "kafka-a") == victim_topic
    # deleting the claimer leaves every object of the victim's in place
    alertfilters.delete(state, claimer, LOG, {})
    assert kube.find("KafkaTopic", "af.sci.victim.output", "kafka-a") == victim_topic
    assert kube.find("Deployment", "af-victim", "sci") is not None


@pytest.mark.parametrize("topic", ["alerts", "__consumer_offsets", "sci.x"])
def test_the_reconciler_refuses_an_input_internal_or_foreign_namespace_topic(
    state: State, kube: FakeKube, topic: str
) -> None:
    af = _reconcile(state, kube, _filter("claimer", ns="evil", output={"topic": topic}))
    status, reason, message = _ready(af)
    assert (status, reason) == ("False", "TopicConflict") and "spec.output.topic" in message
    assert not [k for k in kube.objects if k[0] in ("kafkatopics", "kafkausers", "deployments")]


def test_a_child_of_the_same_name_owned_by_an_earlier_filter_is_not_taken_over(state: State, kube: FakeKube) -> None:
    earlier = {
        "name": "af-bright",
        "namespace": "sci",
        "uid": "dep-1",
        "ownerReferences": [{"uid": "old", "controller": True}],
    }
    kube.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": earlier, "spec": {"replicas": 1}})
    af = _reconcile(state, kube, _filter("bright"))
    status, reason, message = _ready(af)
    assert (status, reason) == ("False", "NameConflict") and "Deployment sci/af-bright" in message
    assert kube.find("Deployment", "af-bright", "sci")["metadata"]["ownerReferences"][0]["uid"] == "old"  # type: ignore[index]
    alertfilters.delete(state, af, LOG, {})  # never deletes what it does not own
    assert kube.find("Deployment", "af-bright", "sci") is not None


def test_status_records_every_owned_name(state: State, kube: FakeKube) -> None:
    af = _reconcile(state, kube, _filter("bright"))
    names = af["status"]["names"]
    assert names["consumerGroup"] == "alertfilter.sci.bright.uid-sci-bright"
    assert names["kafkaUser"] == "af.sci.bright" and names["runner"] == "af-bright"
    assert all(kube.find(k, n, ns) for k, n, ns in [
        ("KafkaTopic", names["outputKafkaTopic"], "kafka-a"),
        ("KafkaTopic", names["deadLetterKafkaTopic"], "kafka-a"),
        ("KafkaUser", names["kafkaUser"], "kafka-a"),
        ("Deployment", names["runner"], "sci"),
    ])  # fmt: skip


def test_a_placed_filter_is_not_moved_to_another_pool(state: State, kube: FakeKube) -> None:
    af = _reconcile(state, kube, _filter("bright"))
    assert af["status"]["pool"] == "pool-a"
    moved = {**af, "spec": {**af["spec"], "pool": "pool-b"}}
    af = _reconcile(state, kube, moved)
    status, reason, message = _ready(af)
    assert (status, reason) == ("False", "PoolChangeRefused") and "cannot move" in message


def test_every_adversarial_pair_runs_side_by_side(state: State, kube: FakeKube) -> None:
    for ns in {ns for ns, _ in ADVERSARIAL}:
        kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    pool = kube.find("FilterPool", "pool-a")
    assert pool is not None
    pool["spec"]["capacity"] = {"nodes": 10, "filtersPerNode": 50}
    for ns, name in ADVERSARIAL:
        af = _reconcile(state, kube, _filter(name, ns=ns))
        assert af["status"]["pool"] == "pool-a", (ns, name, _ready(af))
        assert _ready(af)[1] != "NameConflict", (ns, name, _ready(af))
    topics = [o for k, o in kube.objects.items() if k[0] == "kafkatopics"]
    assert len(topics) == 2 * len(ADVERSARIAL)
    assert len({t["spec"]["topicName"] for t in topics}) == len(topics)
    for a, b in itertools.combinations(ADVERSARIAL, 2):
        assert _ref(*a).runner_name != _ref(*b).runner_name or a[0] != b[0]


def test_a_pool_s_mirrormaker_2_storage_topics_are_refused_as_an_output() -> None:
    # MirrorMaker 2's Connect storage topics (<pool kafka>-mirror-configs|offsets|status): a filter's
    # KafkaTopic would take one over (delete policy, its retention) and stop the pool's mirror
    pools = [
        {"metadata": {"name": "pool-a"}, "spec": {"mirror": {"topic": "alerts"}}},
        {"metadata": {"name": "pool-b"}, "spec": {"kafka": {"clusterName": "central"}}},
    ]
    claims = claims_of([], pools, ["sci"], exclude=None)
    for topic in ("pool-a-kafka-mirror-configs", "pool-a-kafka-mirror-offsets", "Pool-A-Kafka-Mirror-Status",
                  "central-mirror-configs", "central-mirror.x"):  # fmt: skip
        problem = output_topic_problem("sci", "f", {"output": {"topic": topic}}, claims)
        assert problem is not None and "MirrorMaker 2 topics" in problem, topic
    assert output_topic_problem("sci", "f", {"output": {"topic": "pool-a-kafka-mirrors-fan"}}, claims) is not None
    assert output_topic_problem("sci", "f", {"output": {"topic": "sci.mirror-configs"}}, claims) is None
