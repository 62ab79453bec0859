"""The contract after admission (issue #12, second tenant red team): a rule that an object created
later would trigger never holds a running filter's updates or deletion, racing creates cannot leak a
pool's room, and look-alike names ('_' for '.', upper case) are the names they look like."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import kopf
import pytest

from alertfilter_operator import alertfilters
from alertfilter_operator import state as state_module
from alertfilter_operator.admission import validate_contract
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.contract import Claims, output_topic_problem
from alertfilter_operator.state import State

from .conftest import SOURCE, namespace_body, pool_body
from .fake_kube import FakeKube

LOG = logging.getLogger("test")


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([pool_body(), *(namespace_body(n) for n in ("kafka-a", "evil", "science"))])


@pytest.fixture
def memo(kube: FakeKube) -> kopf.Memo:
    m = kopf.Memo()
    m.state = State(kube, OperatorConfig(runner_image="runner:test"))
    return m


def _body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "x", "namespace": "evil"}, "spec": spec, "status": status or {}})


def _check(memo: kopf.Memo, spec: dict[str, Any], old: kopf.Body | None = None) -> None:
    validate_contract(spec=_body(spec).spec, name="x", namespace="evil", memo=memo, old=old)


def test_an_update_that_keeps_the_topic_and_pool_is_never_refused(memo: kopf.Memo, kube: FakeKube) -> None:
    spec = {"source": SOURCE, "output": {"topic": "future-ns.x"}, "pool": "pool-a"}
    _check(memo, spec)  # admitted: no namespace future-ns yet
    kube.put(namespace_body("future-ns"))
    with pytest.raises(kopf.AdmissionError, match="belong to namespace 'future-ns'"):
        _check(memo, spec)  # a new filter of that topic would be refused now...
    # ...but the admitted one's own updates (kopf's finalizer, a source edit, its deletion) pass
    _check(memo, {**spec, "maxAlertsPerVisit": 5}, old=_body(spec, {"pool": "pool-a"}))


def test_a_pool_change_is_still_checked_on_update(memo: kopf.Memo) -> None:
    spec = {"source": SOURCE, "pool": "pool-a"}
    with pytest.raises(kopf.AdmissionError, match="cannot move"):
        _check(memo, {**spec, "pool": "pool-b"}, old=_body(spec, {"pool": "pool-a"}))


def test_a_running_filter_is_not_stranded_by_a_namespace_created_later(kube: FakeKube, memo: kopf.Memo) -> None:
    state: State = memo.state
    body = {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": "x", "namespace": "evil", "uid": "uid-x", "generation": 1},
        "spec": {"source": SOURCE, "output": {"topic": "future-ns.x"}},
    }
    kube.put(body)
    with contextlib.suppress(kopf.TemporaryError):  # waiting for the KafkaUser's password: fine here
        alertfilters.reconcile(state, body, LOG, {})
    kube.put(namespace_body("future-ns"))
    with contextlib.suppress(kopf.TemporaryError):
        alertfilters.reconcile(state, body, LOG, {})
    af = kube.find("AlertFilter", "x", "evil") or {}
    reasons = {c["type"]: c["reason"] for c in af["status"]["conditions"]}
    assert reasons["TopicReady"] != "TopicConflict" and af["status"]["pool"] == "pool-a"


def test_a_placement_never_confirmed_stops_holding_room(monkeypatch: pytest.MonkeyPatch, memo: kopf.Memo) -> None:
    state: State = memo.state
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    state.pending[("evil", "gone")] = ("pool-a", 1)  # decided, then deleted before its status was written
    assert state.placement_book({}) == {("evil", "gone"): ("pool-a", 1)}
    clock[0] += state_module.PENDING_TTL_S + 1
    assert state.placement_book({}) == {}


@pytest.mark.parametrize(
    ("topic", "words"),
    [
        ("science_x", "belong to namespace 'science'"),
        ("SCIENCE.x", "belong to namespace 'science'"),
        ("ALERTS", "input topic"),
        ("vic2_deadletter", "dead-letter topics"),
        ("x.DeadLetter", "dead-letter topics"),
    ],
)
def test_look_alike_names_are_the_names_they_look_like(topic: str, words: str) -> None:
    claims = Claims(frozenset({"alerts"}), frozenset(), frozenset({"science", "evil"}))
    problem = output_topic_problem("evil", "x", {"output": {"topic": topic}}, claims)
    assert problem is not None and words in problem
