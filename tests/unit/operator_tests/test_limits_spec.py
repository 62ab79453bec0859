"""spec.limits on the operator's side: the models refuse bad limits, the runner's environment has
the filter's limits over the pool's defaults field by field, and the Limited condition (with its
Events) follows what the runners report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from alertfilter.settings import from_env
from alertfilter_operator.builders import PoolInfo
from alertfilter_operator.builders.env import effective_limits, runner_env
from alertfilter_operator.conditions import FALSE, TRUE, get_condition
from alertfilter_operator.limited import (
    LIMITED,
    limit_message,
    limited_change,
    limited_verdict,
    merge_limits,
)
from alertfilter_operator.models import AlertFilterSpec

from .conftest import SOURCE, filter_ref, pool_spec

NOON = int(dt.datetime(2026, 12, 3, 12, 3, 11, tzinfo=dt.UTC).timestamp())


def env_of(ref: Any, pool: PoolInfo) -> dict[str, str]:
    return {e["name"]: e["value"] for e in runner_env(ref, pool) if "value" in e}


# --- validation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"maxAcceptedPerDay": 0}, "maxAcceptedPerDay"),
        ({"maxAcceptedPerDay": -3}, "maxAcceptedPerDay"),
        ({"maxBytesPerDay": 0}, "maxBytesPerDay"),
        ({"maxMatchRate": 0}, "maxMatchRate"),
        ({"maxMatchRate": 1.5}, "maxMatchRate"),
        ({"matchRateWindow": 999}, "matchRateWindow"),
        ({"maxAlertsPerDay": 5}, "maxAlertsPerDay"),  # a misspelt field is refused, not ignored
    ],
)
def test_bad_limits_are_refused_naming_the_field(limits, field):
    with pytest.raises(ValidationError, match=field):
        AlertFilterSpec.model_validate({"source": SOURCE, "limits": limits})
    with pytest.raises(ValidationError, match=field):
        pool_spec(defaultLimits=limits)


def test_the_crd_schema_says_the_bounds():
    from alertfilter_operator.crdgen import crds

    docs = crds()
    af = next(d for d in docs.values() if d["spec"]["names"]["kind"] == "AlertFilter")
    props = af["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["limits"]
    lim = props["properties"]
    assert lim["maxAcceptedPerDay"]["minimum"] == 1 and lim["maxBytesPerDay"]["minimum"] == 1
    assert lim["maxMatchRate"]["minimum"] == 0 and lim["maxMatchRate"]["exclusiveMinimum"] is True
    assert lim["maxMatchRate"]["maximum"] == 1
    assert lim["matchRateWindow"]["minimum"] == 1000
    assert all(p.get("description") for p in lim.values()) and props.get("description")
    pool = next(d for d in docs.values() if d["spec"]["names"]["kind"] == "FilterPool")
    pool_spec_props = pool["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(pool_spec_props["defaultLimits"]["properties"]) == set(lim)


# --- the runner's environment: the filter's limits over the pool's, field by field ----------------------------
def test_no_limits_no_variables(ref, pool):
    assert not [k for k in env_of(ref, pool) if "PER_DAY" in k or "MATCH" in k]


def test_a_filters_limits_override_the_pools_defaults_field_by_field():
    pool = PoolInfo.from_spec("pool-a", pool_spec(defaultLimits={"maxAcceptedPerDay": 1000, "maxMatchRate": 0.1}))
    ref = filter_ref(limits={"maxAcceptedPerDay": 500, "maxBytesPerDay": 10**8})
    assert effective_limits(ref, pool) == {"maxAcceptedPerDay": 500, "maxBytesPerDay": 10**8, "maxMatchRate": 0.1}
    env = env_of(ref, pool)
    assert env["ALERTFILTER_MAX_ACCEPTED_PER_DAY"] == "500"
    assert env["ALERTFILTER_MAX_BYTES_PER_DAY"] == "100000000"
    assert env["ALERTFILTER_MAX_MATCH_RATE"] == "0.1"
    assert from_env(env)["max_match_rate"] == 0.1  # the runner reads what the operator wrote
    inherit = env_of(filter_ref(), pool)
    assert inherit["ALERTFILTER_MAX_ACCEPTED_PER_DAY"] == "1000" and inherit["ALERTFILTER_MAX_MATCH_RATE"] == "0.1"


def test_replicas_share_the_per_day_limits_never_the_rate():
    pool = PoolInfo.from_spec("pool-a", pool_spec())
    env = env_of(
        filter_ref(replicas=3, limits={"maxAcceptedPerDay": 500, "maxBytesPerDay": 2, "maxMatchRate": 0.05}), pool
    )
    assert env["ALERTFILTER_MAX_ACCEPTED_PER_DAY"] == "166"  # 3 x 166 <= 500
    assert env["ALERTFILTER_MAX_BYTES_PER_DAY"] == "1"  # at least 1
    assert env["ALERTFILTER_MAX_MATCH_RATE"] == "0.05"


def test_every_digit_of_the_rate_reaches_the_runner():
    env = env_of(filter_ref(limits={"maxMatchRate": 0.0012345678}), PoolInfo.from_spec("p", pool_spec()))
    assert from_env(env)["max_match_rate"] == 0.0012345678


# --- the Limited condition from the runners' values --------------------------------------------------------
def rep(limited: bool, t: int | None = NOON, **extra: Any) -> dict[str, Any]:
    return {"maxAcceptedPerDay": {"value": 500, "limited": limited, "trippedAt": t if limited else None, **extra}}


def test_the_message_gives_the_figure_the_time_and_when_forwarding_resumes():
    assert limit_message("maxAcceptedPerDay", {"value": 500, "trippedAt": NOON}) == (
        "maxAcceptedPerDay 500 reached at 12:03:11 UTC; forwarding resumes at 00:00 UTC"
    )
    assert limit_message("maxMatchRate", {"value": 0.05, "trippedAt": NOON, "window": 1000}) == (
        "maxMatchRate 0.05 passed at 12:03:11 UTC; forwarding resumes with the next window of 1000 alerts"
    )


def test_pods_merge_a_limit_stops_the_filter_when_it_stops_one_runner_since_the_earliest_trip():
    merged = merge_limits([rep(False), rep(True, NOON + 60), rep(True, NOON), "junk", {"other": 1}])
    assert merged == {
        "maxAcceptedPerDay": {"value": 500, "limited": True, "trippedAt": NOON, "pods": 3, "limitedPods": 2}
    }
    assert merge_limits([None, {}]) is None
    assert limited_verdict(merged)[2] == (  # type: ignore[index]
        "maxAcceptedPerDay 500 per runner pod reached at 12:03:11 UTC (2 of 3 pods stopped); forwarding resumes at 00:00 UTC"
    )


@pytest.mark.parametrize("t", [float("nan"), float("inf"), 1e300, -5, "12:00", True])
def test_a_trip_time_no_clock_has_is_left_out_never_a_failed_status_round(t):
    # what a runner pod serves is its own: a filter's image may serve any JSON
    merged = merge_limits([{"maxAcceptedPerDay": {"value": 500, "limited": True, "trippedAt": t}}])
    assert merged is not None and merged["maxAcceptedPerDay"]["trippedAt"] is None
    assert limited_verdict(merged)[2] == "maxAcceptedPerDay 500 reached; forwarding resumes at 00:00 UTC"  # type: ignore[index]
    assert limit_message("maxAcceptedPerDay", {"value": 500, "trippedAt": t}).startswith(
        "maxAcceptedPerDay 500 reached;"
    )


def test_verdicts():
    assert limited_verdict(None) is None
    s, reason, msg = limited_verdict(merge_limits([rep(True)]))  # type: ignore[misc]
    assert (s, reason) == (TRUE, "LimitReached") and "maxAcceptedPerDay 500 reached at 12:03:11 UTC" in msg
    s, reason, msg = limited_verdict(merge_limits([rep(False)]))  # type: ignore[misc]
    assert (s, reason, msg) == (FALSE, "WithinLimits", "forwarding: no limit passed (maxAcceptedPerDay 500)")


def test_the_condition_trips_with_a_warning_event_and_resets_with_a_normal_one():
    conditions: list[dict[str, Any]] = []
    new, event = limited_change(conditions, [rep(False)], answered=1, generation=2)
    assert new is not None and get_condition(new, LIMITED)["status"] == FALSE and event is None  # type: ignore[index]
    assert limited_change(new, [rep(False)], 1, 2) == (None, None)  # nothing changed: nothing written
    tripped, event = limited_change(new, [rep(True)], 1, 2)
    assert tripped is not None and get_condition(tripped, LIMITED)["status"] == TRUE  # type: ignore[index]
    assert event == (
        "Warning",
        "LimitReached",
        "maxAcceptedPerDay 500 reached at 12:03:11 UTC; forwarding resumes at 00:00 UTC",
    )
    assert limited_change(tripped, [rep(True)], 1, 2) == (None, None)
    assert limited_change(tripped, [], 0, 2) == (None, None)  # no runner answered: nothing is known
    reset, event = limited_change(tripped, [rep(False)], 1, 2)
    assert get_condition(reset, LIMITED)["status"] == FALSE  # type: ignore[index]
    assert event is not None and event[:2] == ("Normal", "LimitReset")


def test_limits_removed_turn_the_condition_false_and_filters_without_limits_get_none():
    assert limited_change([], [None], 1, 1) == (None, None)
    tripped, _ = limited_change([], [rep(True)], 1, 1)
    assert tripped is not None
    cleared, event = limited_change(tripped, [None], 1, 1)
    assert get_condition(cleared, LIMITED)["reason"] == "WithinLimits"  # type: ignore[index]
    assert event is not None and event[0] == "Normal"


# --- the runner-status daemon writes it from a real runner's status document --------------------------------
def test_observe_sets_limited_from_a_runners_document_and_posts_events():
    import logging

    from alertfilter.limits import LimitGuard, Limits
    from alertfilter.metrics import HealthServer, RunnerMetrics
    from alertfilter.runstatus import RunnerStatus
    from alertfilter_operator.config import OperatorConfig
    from alertfilter_operator.observe import observe
    from alertfilter_operator.state import State

    from .fake_kube import FakeKube

    clock = [float(NOON)]
    guard = LimitGuard(Limits(max_accepted_per_day=2), lambda: clock[0])
    st = RunnerStatus()
    st.provide("limits", lambda: guard.status() or None)
    server = HealthServer(0, RunnerMetrics(), lambda: True, lambda: True, host="127.0.0.1", status=st).start()
    meta = {"name": "f", "namespace": "sci", "uid": "u", "generation": 3}
    af = {"apiVersion": "alerts.lsst.io/v1alpha1", "kind": "AlertFilter", "metadata": meta, "spec": {}}
    af["status"] = {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "af-f-1",
            "namespace": "sci",
            "labels": {"alerts.lsst.io/filter": "f", "pod-template-hash": "5d9c"},
            # the runner Deployment's ReplicaSet: the operator asks no other pod
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "af-f-5d9c", "controller": True}
            ],
        },
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }
    kube = FakeKube([af, pod])
    state = State(kube, OperatorConfig(runner_status_port=server.port))
    log = logging.getLogger("test")

    def limited() -> dict[str, Any]:
        return get_condition(kube.find("AlertFilter", "f", "sci")["status"]["conditions"], LIMITED) or {}  # type: ignore[index]

    try:
        observe(state, "sci", "f", log)
        assert limited()["status"] == FALSE and kube.events() == []
        assert [guard.admit(10) for _ in range(3)] == [True, True, False]
        observe(state, "sci", "f", log)
        assert limited()["status"] == TRUE and limited()["reason"] == "LimitReached"
        assert limited()["message"] == "maxAcceptedPerDay 2 reached at 12:03:11 UTC; forwarding resumes at 00:00 UTC"
        (event,) = kube.events()
        assert event["type"] == "Warning" and event["reason"] == "LimitReached"
        assert observe(state, "sci", "f", log) is None  # nothing new: nothing written, no second Event
        clock[0] += 86_400  # the next UTC day
        observe(state, "sci", "f", log)
        assert limited()["status"] == FALSE and [e["reason"] for e in kube.events()] == ["LimitReached", "LimitReset"]
        conditions = kube.find("AlertFilter", "f", "sci")["status"]["conditions"]  # type: ignore[index]
        assert get_condition(conditions, "Ready")["status"] == TRUE  # type: ignore[index]  # the others untouched
    finally:
        server.stop()
