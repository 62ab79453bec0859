"""Issue #12 against a real API server and the operator process with its webhook: what a hostile
or careless user meets at ``kubectl apply`` and after (the rules themselves are unit-tested in
tests/unit/operator_tests/test_contract.py)."""

from __future__ import annotations

import functools
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .operator_harness import (
    alertfilter,
    apply_json,
    condition,
    get,
    make_pool,
    wait_condition,
    wait_for,
)


def _namespace(apiserver, name: str) -> str:
    apiserver.kubectl("create", "namespace", name)
    return name


def _placed(apiserver, name: str, ns: str) -> Any:
    return wait_for(
        lambda: (a := get(apiserver, "alertfilter", name, ns)) and (a.get("status") or {}).get("names") and a,
        60,
        f"{ns}/{name} to be placed",
    )


def test_another_filter_s_topic_the_input_and_internal_topics_are_refused_at_apply(apiserver, operator, pool):
    pname, _ = pool
    victim_ns = _namespace(apiserver, f"v-{uuid.uuid4().hex[:6]}")
    evil_ns = _namespace(apiserver, f"e-{uuid.uuid4().hex[:6]}")
    shared = f"t{uuid.uuid4().hex[:6]}.victim"  # a custom topic outside any namespace's names
    apply_json(apiserver, alertfilter("victim", pool=pname), victim_ns)
    apply_json(apiserver, alertfilter("victim2", pool=pname, output={"topic": shared}), victim_ns)
    _placed(apiserver, "victim", victim_ns)
    for topic, words in [
        (f"{victim_ns}.victim", f"belong to namespace '{victim_ns}'"),
        (f"{victim_ns}_victim", f"belong to namespace '{victim_ns}'"),  # '_' counts as '.'
        (shared.replace(".", "_").upper(), "already the output or dead-letter topic of another AlertFilter"),
        ("alerts", "input topic"),
        ("__consumer_offsets", "internal topic"),
        ("mine.deadletter", "dead-letter topics"),
    ]:
        r = apply_json(apiserver, alertfilter("claimer", pool=pname, output={"topic": topic}), evil_ns, check=False)
        assert r.returncode != 0 and "spec.output.topic" in r.stderr and words in r.stderr, (topic, r.stderr)
    assert get(apiserver, "alertfilter", "claimer", evil_ns) is None


def test_adversarial_name_pairs_get_distinct_children(apiserver, operator, pool):
    pname, kns = pool
    base = f"c{uuid.uuid4().hex[:5]}"
    ns1, ns2 = _namespace(apiserver, base), _namespace(apiserver, f"{base}-x")
    pairs = [(ns1, "x-y"), (ns2, "y"), (ns1, "c1"), (ns1, "c1-dlq")]
    for ns, name in pairs:
        apply_json(apiserver, alertfilter(name, pool=pname), ns)
    names = {(ns, name): _placed(apiserver, name, ns)["status"]["names"] for ns, name in pairs}
    resources = [n[k] for n in names.values() for k in ("outputKafkaTopic", "deadLetterKafkaTopic", "kafkaUser")]
    assert len(set(resources)) == len(resources)
    for (ns, name), n in names.items():
        topic = get(apiserver, "kafkatopic", n["outputKafkaTopic"], kns)
        assert topic["spec"]["topicName"] == f"{ns}.{name}"
        assert topic["metadata"]["labels"]["alerts.lsst.io/owner-name"] == name
        cm = get(apiserver, "configmap", n["runner"], ns)
        assert cm["metadata"]["ownerReferences"][0]["name"] == name


def test_a_filter_created_again_does_not_resume_the_old_consumer_group(apiserver, operator, pool, namespace):
    pname, _ = pool
    apply_json(apiserver, alertfilter("again", pool=pname), namespace)
    first = _placed(apiserver, "again", namespace)["status"]["names"]["consumerGroup"]
    apiserver.kubectl("delete", "alertfilter", "again", "-n", namespace, "--timeout=60s")
    apply_json(apiserver, alertfilter("again", pool=pname), namespace)
    second = _placed(apiserver, "again", namespace)["status"]["names"]["consumerGroup"]
    assert first != second and first.startswith(f"alertfilter.{namespace}.again.")


@pytest.mark.parametrize(
    "source",
    [
        "def f(alert):\n    return True  # \U0001f52d a telescope outside the basic plane\n",
        "def f(alert):\n    return True\n" + "# padding to 120 KB, past what two annotations hold\n" * 2400,
    ],
    ids=["emoji", "120kB"],
)
def test_any_unicode_or_a_large_source_runs_and_deletes(apiserver, operator, pool, namespace, source):
    pname, kns = pool
    apply_json(apiserver, alertfilter("odd", source=source, pool=pname), namespace)
    af = wait_for(
        lambda: (
            (a := get(apiserver, "alertfilter", "odd", namespace))
            and condition(a, "SourceValid").get("status") == "True"
            and get(apiserver, "deployment", "af-odd", namespace)
            and a
        ),
        60,
        "the filter to be reconciled\n" + operator.log(),
    )
    assert get(apiserver, "configmap", "af-odd", namespace)["data"]["filter.py"] == source
    apiserver.kubectl("delete", "alertfilter", "odd", "-n", namespace, "--timeout=60s")
    assert get(apiserver, "alertfilter", "odd", namespace) is None
    assert get(apiserver, "kafkatopic", af["status"]["names"]["outputKafkaTopic"], kns) is None


def test_a_running_filter_cannot_move_pools_but_a_mistyped_pool_can_be_corrected(apiserver, operator, pool, namespace):
    pname, _ = pool
    other, _ = make_pool(apiserver)
    apply_json(apiserver, alertfilter("typo", pool="no-such-pool"), namespace)
    wait_condition(apiserver, "alertfilter", "typo", namespace, "Ready", reason="Unschedulable")
    apply_json(apiserver, alertfilter("typo", pool=pname), namespace)  # corrected: accepted and placed
    assert _placed(apiserver, "typo", namespace)["status"]["pool"] == pname
    r = apply_json(apiserver, alertfilter("typo", pool=other), namespace, check=False)
    assert r.returncode != 0 and f"runs in FilterPool '{pname}'" in r.stderr, r.stderr


def test_a_pool_being_deleted_says_so_and_so_do_filters_that_name_it(apiserver, operator, namespace):
    pname, _ = make_pool(apiserver)
    apply_json(apiserver, alertfilter("tenant", pool=pname), namespace)
    _placed(apiserver, "tenant", namespace)
    apiserver.kubectl("delete", "filterpool", pname, "--wait=false")
    wait_condition(apiserver, "filterpool", pname, None, "Ready", reason="Deleting")
    apply_json(apiserver, alertfilter("late", pool=pname), namespace)
    late = wait_condition(apiserver, "alertfilter", "late", namespace, "Ready", reason="Unschedulable")
    assert "is being deleted" in condition(late, "Ready")["message"]
    apiserver.kubectl("delete", "alertfilter", "tenant", "late", "-n", namespace, "--timeout=60s")


def test_a_namespace_created_later_never_blocks_a_filter_s_edits_or_its_deletion(apiserver, operator, pool, namespace):
    pname, _ = pool
    later = f"later-{uuid.uuid4().hex[:6]}"
    apply_json(apiserver, alertfilter("early", pool=pname, output={"topic": f"{later}.x"}), namespace)
    _placed(apiserver, "early", namespace)
    _namespace(apiserver, later)  # now a new filter could not take that name; this one keeps it
    apply_json(
        apiserver, alertfilter("early", pool=pname, output={"topic": f"{later}.x"}, maxAlertsPerVisit=5), namespace
    )
    apiserver.kubectl("delete", "alertfilter", "early", "-n", namespace, "--timeout=60s")
    assert get(apiserver, "alertfilter", "early", namespace) is None


def test_racing_creates_of_one_topic_leave_one_owner_and_no_orphan(apiserver, operator, pool):
    pname, kns = pool
    topic = f"race-{uuid.uuid4().hex[:6]}"
    spaces = [_namespace(apiserver, f"r{i}-{uuid.uuid4().hex[:6]}") for i in range(3)]
    variants = (topic, topic.upper(), topic)
    with ThreadPoolExecutor(3) as pool_of_threads:  # three tenants apply at once
        list(
            pool_of_threads.map(
                lambda nv: apply_json(
                    apiserver, alertfilter("racer", pool=pname, output={"topic": nv[1]}), nv[0], check=False
                ),
                zip(spaces, variants, strict=True),
            )
        )
    admitted = [ns for ns in spaces if get(apiserver, "alertfilter", "racer", ns)]
    assert admitted

    # every admitted filter is reconciled (its finalizer and status writes are not refused)...
    def outcome(ns: str) -> str | None:
        af = get(apiserver, "alertfilter", "racer", ns) or {}
        if condition(af, "RunnerReady").get("reason") == "NameConflict":
            return "conflict"
        return "owner" if (af.get("status") or {}).get("names") else None

    outcomes = [wait_for(functools.partial(outcome, ns), 90, f"{ns}/racer to be reconciled") for ns in admitted]
    assert outcomes.count("owner") == 1, outcomes
    # ...exactly one owns the topic, and deleting them all leaves no KafkaTopic or KafkaUser behind
    for ns in admitted:
        apiserver.kubectl("delete", "alertfilter", "racer", "-n", ns, "--timeout=60s")
    left = json.loads(apiserver.kubectl("get", "kafkatopics,kafkausers", "-n", kns, "-o", "json").stdout)["items"]
    assert not [o for o in left if (o["metadata"].get("labels") or {}).get("alerts.lsst.io/owner-name") == "racer"]
