"""The end-to-end tests' stack: ``devstack up`` on the kind cluster of kind-config.yaml.

The stack (kind cluster, images, Helm release, brokers on the host, Strimzi stand-in) comes up once
per session with ``devstack up`` in its usual state folder: a stack already running (after
``make demo``) is reused, with its images and release brought up to date; one this session started
has its host processes stopped at the end (the cluster stays, for the next run). Each test module
works in namespaces of its own, labelled for the restricted Pod Security Standard like the demo's;
the last one deletes and re-creates the FilterPool. A stack that cannot come up fails the tests
(never skips).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
CAP = 20


@pytest.fixture(scope="session")
def devstack():
    """(state, cluster handle, state folder) of a running stack."""
    from alertfilter_devstack import stack

    was_up = stack.is_up()
    try:
        st = stack.up()
    except Exception as exc:  # noqa: BLE001 - report why, then fail
        pytest.fail(f"devstack did not come up on kind: {exc}")
    cluster = stack.cluster()
    cluster.kubectl("apply", "-f", st["filterpool"])
    yield st, cluster, stack.state_dir()
    if not was_up:
        stack.down(quiet=True)


@pytest.fixture
def namespace(devstack):
    """A fresh namespace enforcing the restricted Pod Security Standard, deleted afterwards."""
    from alertfilter_devstack.stack import RESTRICTED

    _, cluster, _ = devstack
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 2.0) -> Any:
    """Poll ``pred`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def condition(cluster, ns: str, name: str, ctype: str) -> dict[str, Any]:
    """The AlertFilter's condition ``ctype`` ({} when absent or the filter is gone)."""
    r = cluster.kubectl("get", "alertfilter", name, "-n", ns, "-o", "json", check=False)
    if r.returncode:
        return {}
    return next((c for c in (json.loads(r.stdout).get("status") or {}).get("conditions", []) if c["type"] == ctype), {})


def filter_manifest(name: str, source: str, **spec: Any) -> str:
    """An AlertFilter on pool-a as JSON (``spec`` adds fields, e.g. maxAlertsPerVisit)."""
    return json.dumps({"apiVersion": "alerts.lsst.io/v1alpha1", "kind": "AlertFilter", "metadata": {"name": name},
                       "spec": {"pool": "pool-a", "source": source, **spec}})


def apply_filter(cluster, ns: str, name: str, source: str, ready: bool = True, **spec: Any) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=filter_manifest(name, source, **spec))
    if ready:
        wait_for(lambda: condition(cluster, ns, name, "Ready").get("status") == "True", 240, f"{name} to be Ready")


def runner_pods(cluster, ns: str, name: str, running: bool = True) -> list[dict[str, Any]]:
    """The filter's runner pods (only running, ready, not terminating ones with ``running``)."""
    pods = cluster.get_json("pods", "-n", ns, "-l", f"alerts.lsst.io/filter={name}")["items"]
    if not running:
        return pods
    return [p for p in pods if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get(
        "deletionTimestamp") and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]


def consumed(cluster, ns: str, name: str) -> float:
    """alertfilter_alerts_consumed_total summed over the filter's running pods (API server proxy)."""
    total = 0.0
    for p in runner_pods(cluster, ns, name):
        try:
            text = cluster.raw(f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}:8080/proxy/metrics")
        except RuntimeError:
            continue
        total += sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("alertfilter_alerts_consumed_total"))
    return total


def read(bootstrap: str, topic: str, start: int = 0) -> list:
    """Every message of ``topic`` from ``start`` (read_committed), in partition order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{time.time_ns()}", "enable.partition.eof": True,
                  "isolation.level": "read_committed", "log_level": 3})
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        c.close()
        return []
    c.assign([TopicPartition(topic, p, start or -2) for p in md.partitions])
    out, eof, idle = [], set(), time.monotonic()
    while len(eof) < len(md.partitions) and time.monotonic() - idle < 10:
        for m in c.consume(500, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            idle = time.monotonic()
            out.append(m)
    c.close()
    return out


def end_offset(bootstrap: str, topic: str) -> int:
    """The end offset of a one-partition ``topic`` (0 when it does not exist). Not the count of what
    ``read`` gives: records before the log start (the demo drops earlier ones) are gone."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{time.time_ns()}", "log_level": 3})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        c.close()


def produce_batch(st, alerts_dir: Path, copies: int, first_visit: int, per_visit: int = 60, first_id: int = 0):
    """Produce the real alerts ``copies`` times to the central broker, ``per_visit`` per visit, with
    visit ids from ``first_visit`` and alert ids from ``first_id`` (default ``first_visit * 1000``)."""
    from alertfilter.tools import produce

    return produce(st["kafka_central"]["bootstrap"], "alerts",
                   [alerts_dir / "rubin-v10_0-real-20.avro", alerts_dir / "rubin-v10_0-history-4.avro"],
                   copies=copies, alerts_per_visit=per_visit, cadence_s=0.2, first_visit=first_visit,
                   first_id=first_id or first_visit * 1000, write_schema_dir=st["schema_dir"],
                   out=open(os.devnull, "w"))


def committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    """True when ``group`` has committed every partition of ``topic`` up to its end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in md.partitions]
        done = c.committed(parts, timeout=10)
        return all(tp.offset >= c.get_watermark_offsets(tp, timeout=10)[1] for tp in done)
    finally:
        c.close()
