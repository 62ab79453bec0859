# ruff: noqa: F811
"""spec.startFrom and spec.replayFrom with the operator as a process against a real API server:
bad values are refused at ``kubectl apply`` with what is expected; the runner's environment says
where a new filter starts and which replay to carry out; the request is recorded in status.replay
before the runners are told and keeps its id over edits and an operator restart; the lag, the last
accepted alert and the replay's completion come from what a runner pod reports (the runtime's own
status server, ``GET /status``), and ``kubectl get alertfilters`` shows them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from alertfilter.metrics import HealthServer, RunnerMetrics
from alertfilter.runstatus import RunnerStatus

from .operator_harness import alertfilter, apply_json, get, make_pool, replica_set, wait_for

# the fixtures of modules that serve a fake runner: imported, their names are the tests' arguments
from .status_fixtures import operator, runner_port  # noqa: F401

T = "2026-06-01T00:00:00Z"


def env_of(apiserver: Any, name: str, ns: str) -> dict[str, str]:
    dep = get(apiserver, "deployment", f"af-{name}", ns) or {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return {e["name"]: e.get("value", "") for e in containers[0].get("env") or []}


def status_of(apiserver: Any, name: str, ns: str) -> dict[str, Any]:
    return (get(apiserver, "alertfilter", name, ns) or {}).get("status") or {}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("startFrom", "yesterday", "spec.startFrom must be latest, earliest or an RFC 3339 time"),
        ("startFrom", "2026-06-01 00:00:00", "spec.startFrom must be latest, earliest or an RFC 3339 time"),
        ("startFrom", "2026-02-30T00:00:00Z", "spec.startFrom: must be latest, earliest or an RFC 3339 time"),
        ("replayFrom", "latest", "spec.replayFrom must be an RFC 3339 time"),
        ("replayFrom", "2026-06-01T00:00:00", "spec.replayFrom must be an RFC 3339 time"),
    ],
)
def test_a_bad_start_or_replay_time_is_refused_at_apply(apiserver, operator, namespace, field, value, words):
    r = apply_json(apiserver, alertfilter("bad", **{field: value}), namespace, check=False)
    assert r.returncode != 0 and words in r.stderr, r.stderr


def test_start_replay_and_what_the_runners_report(apiserver, operator, namespace, runner_port):
    pool, _ = make_pool(apiserver, authentication="none")
    apply_json(apiserver, alertfilter("f", pool=pool), namespace)
    env = wait_for(lambda: env_of(apiserver, "f", namespace), 60, "the runner Deployment")
    assert env["ALERTFILTER_START_FROM"] == "latest" and "ALERTFILTER_REPLAY_ID" not in env
    assert get(apiserver, "alertfilter", "f", namespace)["spec"]["startFrom"] == "latest"  # the default, written

    # a runner pod (no kubelet here: the test writes its status) serving the runtime's status document
    status = RunnerStatus()
    status.set("lastAcceptedTime", "2026-06-02T10:00:00Z")
    status.assign("alerts", 0, lag=40)
    status.assign("alerts", 1, lag=2)
    server = HealthServer(runner_port, RunnerMetrics(), lambda: True, lambda: True, host="127.0.0.1", status=status)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "af-f-runner",
            "labels": {"alerts.lsst.io/filter": "f", "pod-template-hash": "5d9c"},
            "ownerReferences": [replica_set("af-f")],
        },
        "spec": {"containers": [{"name": "runner", "image": "alertfilter-runner:test"}]},
    }
    apiserver.kubectl("create", "serviceaccount", "default", "-n", namespace, check=False)  # no controller makes it
    apply_json(apiserver, pod, namespace)
    server.start()
    try:
        apiserver.kubectl(
            "patch", "pod", "af-f-runner", "-n", namespace, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}),
        )  # fmt: skip
        wait_for(lambda: status_of(apiserver, "f", namespace).get("lag") == 42, 60, "status.lag from the runner")
        assert status_of(apiserver, "f", namespace)["lastAcceptedTime"] == "2026-06-02T10:00:00Z"
        table = apiserver.kubectl("get", "alertfilters", "-n", namespace).stdout
        header, row = table.splitlines()[:2]
        assert "LAG" in header and "LAST ACCEPTED" in header and " 42 " in row, table

        # a replay: recorded first, then the runners are told (a rollout)
        apiserver.kubectl("patch", "alertfilter", "f", "-n", namespace, "--type=merge", "-p",
                          json.dumps({"spec": {"replayFrom": T}}))  # fmt: skip
        env = wait_for(
            lambda: (e := env_of(apiserver, "f", namespace)) and "ALERTFILTER_REPLAY_ID" in e and e,
            60,
            "the replay env",
        )
        generation = get(apiserver, "alertfilter", "f", namespace)["metadata"]["generation"]
        assert (env["ALERTFILTER_REPLAY_FROM"], env["ALERTFILTER_REPLAY_ID"]) == (T, str(generation))
        replay = status_of(apiserver, "f", namespace)["replay"]
        assert replay["from"] == T and replay["requestId"] == generation and "completedAt" not in replay

        # the runner has rewound one partition of two: progress, not done
        status.set("inputPartitions", 2)
        status.update_partition("alerts", 0, replay=generation, replayOffset=1200)
        wait_for(lambda: status_of(apiserver, "f", namespace)["replay"].get("partitions"), 60, "the replay's progress")
        assert "completedAt" not in status_of(apiserver, "f", namespace)["replay"]
        status.update_partition("alerts", 1, replay=generation, replayOffset=33)
        done = wait_for(lambda: status_of(apiserver, "f", namespace)["replay"].get("completedAt"), 60, "completion")
        replay = status_of(apiserver, "f", namespace)["replay"]
        assert replay["partitions"] == [{"partition": 0, "offset": 1200}, {"partition": 1, "offset": 33}]

        # an edit, and an operator restart: the same request, the same id, nothing new for the runners
        apiserver.kubectl("patch", "alertfilter", "f", "-n", namespace, "--type=merge", "-p",
                          json.dumps({"spec": {"replayFrom": "2026-06-01T02:00:00+02:00", "maxAlertsPerVisit": 7}}))  # fmt: skip
        wait_for(lambda: env_of(apiserver, "f", namespace).get("ALERTFILTER_MAX_ALERTS_PER_VISIT") == "7", 60, "edit")
        operator.stop()
        operator.start()
        time.sleep(5)  # the restarted operator's resume handler reconciles the filter again
        assert env_of(apiserver, "f", namespace)["ALERTFILTER_REPLAY_ID"] == str(generation)
        assert status_of(apiserver, "f", namespace)["replay"]["completedAt"] == done

        # a new time is a new request
        apiserver.kubectl("patch", "alertfilter", "f", "-n", namespace, "--type=merge", "-p",
                          json.dumps({"spec": {"replayFrom": "2026-05-01T00:00:00Z"}}))  # fmt: skip
        wait_for(
            lambda: env_of(apiserver, "f", namespace).get("ALERTFILTER_REPLAY_FROM") == "2026-05-01T00:00:00Z",
            60,
            "new",
        )
        replay = status_of(apiserver, "f", namespace)["replay"]
        assert replay["requestId"] > generation and "completedAt" not in replay and "partitions" not in replay
    finally:
        server.stop()
