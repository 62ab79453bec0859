"""The runners' status documents as the operator reads them: from a real runner health server,
merged across pods, and written into the AlertFilter's status (lag, last accepted alert)."""

from __future__ import annotations

import logging
from typing import Any

from alertfilter.metrics import HealthServer, RunnerMetrics
from alertfilter.runstatus import RunnerStatus
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.observe import observe, observed_fields
from alertfilter_operator.runner_status import fetch, merge, reachable, read_runners
from alertfilter_operator.state import State

from .fake_kube import FakeKube

LOG = logging.getLogger("test")


def doc(time: str, values: dict[str, Any] | None = None, *partitions: dict[str, Any]) -> dict[str, Any]:
    return {"format": 1, "time": time, "values": values or {}, "partitions": list(partitions)}


def pod(name: str, ip: str | None = "127.0.0.1", phase: str = "Running", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "sci", "labels": {"alerts.lsst.io/filter": "f"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": {"phase": phase, "podIP": ip}}


def test_documents_merge_partitions_by_the_newest_and_values_by_their_rule() -> None:
    a = doc(
        "2026-01-01T00:00:01Z",
        {"lastAcceptedTime": "2026-01-01T00:00:00Z", "inputPartitions": 2, "x": 1},
        {"topic": "alerts", "partition": 0, "lag": 10},
        {"topic": "alerts", "partition": 1, "lag": 3},
    )
    b = doc(
        "2026-01-01T00:00:02Z",
        {"lastAcceptedTime": "2025-12-31T23:59:00Z", "x": 2},
        {"topic": "alerts", "partition": 1, "lag": 1},
    )
    junk: list[Any] = [{"format": 99}, "junk"]
    report = merge([b, *junk, a])
    assert report.answered == 2 and report.lag == 11
    assert report.partitions[("alerts", 1)] == {"lag": 1}  # b is newer
    assert report.values == {"lastAcceptedTime": "2026-01-01T00:00:00Z", "inputPartitions": 2}
    assert report.per_pod("x") == [1, 2]
    assert merge([]).lag is None


def test_only_running_pods_with_an_ip_are_asked() -> None:
    pods = [pod("a"), pod("b", ip=None), pod("c", phase="Pending"), pod("d", deleting=True)]
    assert reachable(pods) == [("a", "127.0.0.1")]


def test_the_operator_reads_a_real_runner_health_server() -> None:
    st = RunnerStatus()
    st.set("inputPartitions", 1)
    st.assign("alerts", 0, lag=4)
    server = HealthServer(0, RunnerMetrics(), lambda: True, lambda: True, host="127.0.0.1", status=st).start()
    try:
        got = fetch("127.0.0.1", server.port)
        assert got is not None and got["partitions"] == [{"topic": "alerts", "partition": 0, "lag": 4}]
        report = read_runners([pod("a"), pod("b", ip=None)], server.port)
        assert (report.asked, report.answered, report.lag) == (1, 1, 4)
    finally:
        server.stop()
    assert fetch("127.0.0.1", server.port, timeout=1) is None  # gone: no document, no error


def test_observed_fields_keep_the_latest_accepted_time_and_drop_an_unknown_lag() -> None:
    old = {"lag": 9, "lastAcceptedTime": "2026-01-02T00:00:00Z"}
    report = merge(
        [doc("t", {"lastAcceptedTime": "2026-01-01T00:00:00Z"}, {"topic": "alerts", "partition": 0, "lag": 2})]
    )
    assert observed_fields(report, old) == {"lag": 2, "lastAcceptedTime": "2026-01-02T00:00:00Z"}
    assert observed_fields(merge([]), old) == {"lag": None, "lastAcceptedTime": "2026-01-02T00:00:00Z"}


def test_observe_patches_only_the_fields_that_changed() -> None:
    st = RunnerStatus()
    st.set("lastAcceptedTime", "2026-01-01T00:00:00Z")
    st.assign("alerts", 0, lag=4)
    server = HealthServer(0, RunnerMetrics(), lambda: True, lambda: True, host="127.0.0.1", status=st).start()
    af = {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": "f", "namespace": "sci", "uid": "u", "generation": 3},
        "spec": {},
        "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    kube = FakeKube([af, pod("a")])
    state = State(kube, OperatorConfig(runner_status_port=server.port))
    try:
        assert observe(state, "sci", "f", LOG) == {"lag": 4, "lastAcceptedTime": "2026-01-01T00:00:00Z"}
        status = kube.find("AlertFilter", "f", "sci")["status"]  # type: ignore[index]
        assert status["observedGeneration"] == 2 and status["lag"] == 4  # the reconcile's fields untouched
        assert observe(state, "sci", "f", LOG) is None  # nothing changed: nothing written
    finally:
        server.stop()
