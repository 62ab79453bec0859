# ruff: noqa: F811
"""spec.limits with the operator as a process against a real API server: bad limits are refused at
``kubectl apply`` with the field named, the runner's environment has the filter's limits over its
pool's spec.defaultLimits (and follows a change of the defaults), and the Limited condition and its
Events follow what a runner pod reports: the runtime's own status server (``GET /status``) with a
real limit guard, whose clock the test moves past a UTC midnight."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from alertfilter.limits import LimitGuard, Limits
from alertfilter.metrics import HealthServer, RunnerMetrics
from alertfilter.runstatus import RunnerStatus

from .operator_harness import (
    alertfilter,
    apply_json,
    get,
    make_pool,
    replica_set,
    wait_condition,
    wait_for,
)

# the fixtures of modules that serve a fake runner: imported, their names are the tests' arguments
from .status_fixtures import operator, runner_port  # noqa: F401

NOON = dt.datetime(2026, 12, 3, 12, 3, 11, tzinfo=dt.UTC).timestamp()


class FakeRunner:
    """What a runner pod serves on its metrics port: the status document, with a real limit guard."""

    def __init__(self, port: int, limits: Limits) -> None:
        self.now = NOON
        self.guard = LimitGuard(limits, lambda: self.now)
        status = RunnerStatus()
        status.provide("limits", lambda: self.guard.status() or None)
        self.server = HealthServer(port, RunnerMetrics(), lambda: True, lambda: True, host="127.0.0.1", status=status)


def patch_pool(apiserver: Any, name: str, spec: dict[str, Any], check: bool = True) -> Any:
    return apiserver.kubectl("patch", "filterpool", name, "--type=merge", "-p", json.dumps({"spec": spec}), check=check)


def env_of(apiserver: Any, name: str, ns: str) -> dict[str, str]:
    dep = get(apiserver, "deployment", f"af-{name}", ns) or {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return {e["name"]: e.get("value", "") for e in containers[0].get("env") or []}


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"maxMatchRate": 1.5}, ["spec.limits.maxMatchRate", "less than or equal to 1"]),
        ({"maxMatchRate": 0}, ["spec.limits.maxMatchRate", "greater than 0"]),
        ({"maxAcceptedPerDay": 0}, ["spec.limits.maxAcceptedPerDay", "greater than or equal to 1"]),
        ({"maxBytesPerDay": -10}, ["spec.limits.maxBytesPerDay", "greater than or equal to 1"]),
        ({"matchRateWindow": 10}, ["spec.limits.matchRateWindow", "greater than or equal to 1000"]),
    ],
)
def test_bad_limits_are_refused_at_apply_naming_the_field(apiserver, operator, namespace, limits, words):
    r = apply_json(apiserver, alertfilter("bad", limits=limits), namespace, check=False)
    assert r.returncode != 0
    for w in words:
        assert w in r.stderr, r.stderr
    pool, _ = make_pool(apiserver, authentication="none")
    r = patch_pool(apiserver, pool, {"defaultLimits": limits}, check=False)
    assert r.returncode != 0 and words[0].replace("spec.limits", "spec.defaultLimits") in r.stderr, r.stderr


def test_limits_reach_the_runner_over_the_pools_defaults_and_the_limited_condition_follows_the_runner(
    apiserver, operator, namespace, runner_port
):
    pool, _ = make_pool(apiserver, authentication="none")
    patch_pool(apiserver, pool, {"defaultLimits": {"maxAcceptedPerDay": 1000, "maxMatchRate": 0.1}})
    apply_json(apiserver, alertfilter("capped", pool=pool, limits={"maxAcceptedPerDay": 500}), namespace)
    env = wait_for(
        lambda: (e := env_of(apiserver, "capped", namespace)) and "ALERTFILTER_MAX_ACCEPTED_PER_DAY" in e and e,
        60,
        "the runner Deployment with the limits",
    )
    assert env["ALERTFILTER_MAX_ACCEPTED_PER_DAY"] == "500"  # the filter's own field wins
    assert env["ALERTFILTER_MAX_MATCH_RATE"] == "0.1"  # the pool's default fills the rest
    assert "ALERTFILTER_MAX_BYTES_PER_DAY" not in env

    patch_pool(apiserver, pool, {"defaultLimits": {"maxAcceptedPerDay": 1000, "maxMatchRate": 0.25}})
    wait_for(
        lambda: env_of(apiserver, "capped", namespace).get("ALERTFILTER_MAX_MATCH_RATE") == "0.25",
        60,
        "the runner to follow the pool's new defaults",
    )
    assert env_of(apiserver, "capped", namespace)["ALERTFILTER_MAX_ACCEPTED_PER_DAY"] == "500"

    # a runner pod (the API server runs no kubelet: the test writes its status) and what it serves
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "af-capped-runner",
            "labels": {"alerts.lsst.io/filter": "capped", "pod-template-hash": "5d9c"},
            "ownerReferences": [replica_set("af-capped")],
        },
        "spec": {"containers": [{"name": "runner", "image": "alertfilter-runner:test"}]},
    }
    apiserver.kubectl("create", "serviceaccount", "default", "-n", namespace, check=False)  # no controllers here
    apply_json(apiserver, pod, namespace)
    runner = FakeRunner(runner_port, Limits(max_accepted_per_day=500, max_match_rate=0.25))
    runner.server.start()
    try:
        apiserver.kubectl(
            "patch", "pod", "af-capped-runner", "-n", namespace, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}),
        )  # fmt: skip
        obj = wait_condition(apiserver, "alertfilter", "capped", namespace, "Limited", status="False", timeout=60)
        assert "maxAcceptedPerDay 500" in json.dumps(obj["status"]["conditions"])

        for _ in range(500):
            assert runner.guard.admit(1000)
        assert not runner.guard.admit(1000)
        obj = wait_condition(
            apiserver, "alertfilter", "capped", namespace, "Limited", status="True", reason="LimitReached", timeout=60
        )
        (c,) = [c for c in obj["status"]["conditions"] if c["type"] == "Limited"]
        assert c["message"] == "maxAcceptedPerDay 500 reached at 12:03:11 UTC; forwarding resumes at 00:00 UTC"
        events = wait_for(lambda: reasons(apiserver, namespace, "capped"), 30, "the LimitReached Event")
        assert "LimitReached" in events

        runner.now += 86_400  # the next UTC day: the runner's limit resets
        wait_condition(
            apiserver, "alertfilter", "capped", namespace, "Limited", status="False", reason="WithinLimits", timeout=60
        )
        wait_for(lambda: "LimitReset" in reasons(apiserver, namespace, "capped"), 30, "the LimitReset Event")
    finally:
        runner.server.stop()


def reasons(apiserver: Any, namespace: str, name: str) -> list[str]:
    r = apiserver.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json", check=False
    )
    if r.returncode != 0:
        return []
    return [e.get("reason", "") for e in json.loads(r.stdout).get("items", [])]
