"""The runners' status documents as the operator reads them: from a real runner health server,
merged across pods, and written into the AlertFilter's status (lag, last accepted alert)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
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


def pod(
    name: str, ip: str | None = "127.0.0.1", phase: str = "Running", deleting: bool = False, owner: str = "af-f-5d9c"
) -> dict[str, Any]:
    """A runner pod of filter ``f`` (its ReplicaSet ``owner``, of the Deployment ``af-f``)."""
    labels = {"alerts.lsst.io/filter": "f", "pod-template-hash": "5d9c"}
    meta: dict[str, Any] = {"name": name, "namespace": "sci", "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "controller": True}]
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


def test_only_the_runner_deployment_s_pods_are_asked_not_any_pod_with_the_label() -> None:
    # a bare pod with the label; pods of the Deployments af-f-x (filter f-x) and af-fx; no hash
    others = [
        pod("bare", owner=""),
        pod("f-x", owner="af-f-x-5d9c"),
        pod("fx", owner="af-fx-5d9c"),
        pod("rs", owner="af-f"),
    ]
    assert reachable([pod("a"), *others], deployment="af-f") == [("a", "127.0.0.1")]
    assert len(reachable([pod("a"), *others])) == 5


class Trickle:
    """A server that sends a status line and then one byte every ``every`` s, never finishing:
    what a pod of a hostile image could answer."""

    def __init__(self, every: float = 0.2) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.every, self.stop = every, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hangs up at its timeout
            conn.sendall(b"HTTP/1.0 200 OK\r\n")
            while not self.stop.wait(self.every):
                conn.sendall(b"X")

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_pod_that_trickles_its_answer_is_cut_off_at_the_timeout_in_all() -> None:
    server = Trickle()
    try:
        started = time.monotonic()
        assert fetch("127.0.0.1", server.port, timeout=0.6) is None
        # a per-read timeout (urllib's) would wait for ever: each byte comes within 0.6 s
        assert time.monotonic() - started < 5
        started = time.monotonic()
        report = read_runners([pod(f"p{i}") for i in range(8)], server.port, timeout=0.6, deployment="af-f")
        assert (report.asked, report.answered) == (8, 0)
        assert time.monotonic() - started < 5  # asked at once: one timeout, not eight
    finally:
        server.close()


def test_an_answer_that_is_not_200_or_too_large_gives_no_document() -> None:
    for answer in (b"HTTP/1.0 500 Oops\r\n\r\n{}", b"HTTP/1.0 200 OK\r\n\r\n" + b" " * (1 << 21), b"junk"):
        sock = socket.create_server(("127.0.0.1", 0))

        def serve(sock: socket.socket = sock, answer: bytes = answer) -> None:
            conn, _ = sock.accept()
            with conn:
                conn.recv(1024)
                with contextlib.suppress(OSError):  # the client may hang up on a large answer
                    conn.sendall(answer)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        assert fetch("127.0.0.1", sock.getsockname()[1], timeout=5) is None
        t.join(5)
        sock.close()


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
