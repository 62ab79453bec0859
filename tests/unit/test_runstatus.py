"""The runner's status document (``GET /status``): named values, assigned partitions, the lag from
the client's statistics, the last accepted alert's time; served by the health server."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest

from alertfilter.clients import ClientEvents
from alertfilter.metrics import HealthServer, RunnerMetrics
from alertfilter.runstatus import STATUS_FORMAT, RunnerStatus, rfc3339


def test_the_document_lists_values_and_only_assigned_partitions() -> None:
    st = RunnerStatus()
    st.set("inputPartitions", 3)
    st.provide("computed", lambda: {"n": 1})
    st.provide("absent", lambda: None)
    st.assign("alerts", 1, replay=7, replayOffset=120)
    st.assign("alerts", 0)
    st.update_partition("alerts", 0, lag=5)
    st.update_partition("alerts", 2, lag=9)  # not assigned: ignored
    doc = st.document(0.0)
    assert doc == {
        "format": STATUS_FORMAT,
        "time": "1970-01-01T00:00:00Z",
        "values": {"inputPartitions": 3, "computed": {"n": 1}},
        "partitions": [
            {"topic": "alerts", "partition": 0, "lag": 5},
            {"topic": "alerts", "partition": 1, "replay": 7, "replayOffset": 120},
        ],
    }
    st.revoke("alerts", 1)
    st.set("inputPartitions", None)
    assert st.document(0.0)["partitions"] == [{"topic": "alerts", "partition": 0, "lag": 5}]
    assert "inputPartitions" not in st.document(0.0)["values"]
    assert st.get("computed") == {"n": 1} and st.partition("alerts", 0) == {"lag": 5}


def test_the_client_statistics_give_each_assigned_partitions_lag() -> None:
    st, metrics = RunnerStatus(), RunnerMetrics()
    st.assign("alerts", 0)
    stats = {"topics": {"alerts": {"partitions": {"0": {"consumer_lag": 42}, "1": {"consumer_lag": 7}, "-1": {}}}}}
    ClientEvents(metrics, threading.Event(), st).on_stats(json.dumps(stats))
    assert st.document(0.0)["partitions"] == [{"topic": "alerts", "partition": 0, "lag": 42}]
    assert metrics.lag.labels("alerts", "1")._value.get() == 7  # the metric has every partition


def test_the_health_server_serves_the_document_and_the_last_accepted_time() -> None:
    metrics, st = RunnerMetrics(), RunnerStatus()
    st.provide("lastAcceptedTime", lambda: rfc3339(t) if (t := metrics.last_accepted_at) else None)
    server = HealthServer(0, metrics, lambda: True, lambda: True, host="127.0.0.1", status=st).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        doc = json.loads(urllib.request.urlopen(f"{url}/status", timeout=5).read())
        assert doc["format"] == STATUS_FORMAT and doc["values"] == {}
        metrics.accepted_now()
        doc = json.loads(urllib.request.urlopen(f"{url}/status", timeout=5).read())
        assert doc["values"]["lastAcceptedTime"] == rfc3339(metrics.last_accepted_at)
        text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        assert "alertfilter_last_accepted_timestamp_seconds" in text
    finally:
        server.stop()


def test_no_other_process_can_bind_the_runner_s_port_for_the_other_address_family() -> None:
    # bound on 0.0.0.0 alone, the filter process could bind [::] (IPv6 only) on the same port and,
    # on an IPv6 pod network, answer /status in the runner's name
    server = HealthServer(0, RunnerMetrics(), lambda: True, lambda: True).start()
    try:
        for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            with socket.socket(family, socket.SOCK_STREAM) as s:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                with pytest.raises(OSError, match="in use"):
                    s.bind((address, server.port))
        assert urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read() == b"ok\n"
    finally:
        server.stop()
