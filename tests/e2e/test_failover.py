"""Failures under a real kubelet: a runner that crashes says why in RunnerReady; a pool node that
stops (``docker stop`` of its kind node) has its runners rescheduled on the pool's other node, with
no accepted alert lost (at-least-once) and the per-visit cap holding across the move."""

from __future__ import annotations

import io
import subprocess
import time

import fastavro
import pytest

from alertfilter.codecs import read_container

from .conftest import (CAP, apply_filter, committed_to_end, condition, end_offset, produce_batch, read, runner_pods,
                       wait_for)


def test_a_crashing_runner_says_why_in_runner_ready(devstack, namespace):
    _, cluster, _ = devstack
    # a name built at run time: the webhook rejects an import of a literal module the image lacks
    source = ('import importlib\n\nimportlib.import_module("_".join(["no_such_module", "for_e2e"]))\n\n\n'
              "def keep(alert):\n    return True\n")
    apply_filter(cluster, namespace, "crashes", source, ready=False)
    cond = wait_for(lambda: (c := condition(cluster, namespace, "crashes", "RunnerReady")).get("status") == "False"
                    and "no_such_module_for_e2e" in c.get("message", "") and c, 300,
                    "RunnerReady to say why the runner crashes")
    assert cond["reason"] in ("CrashLoopBackOff", "Error"), cond
    assert condition(cluster, namespace, "crashes", "Ready")["status"] == "False"


@pytest.fixture
def stopped_node(devstack):
    """Stops the given kind node; starts it again afterwards and waits for it to be Ready."""
    _, cluster, _ = devstack
    stopped: list[str] = []

    def stop(node: str) -> None:
        subprocess.run(["docker", "stop", node], check=True, capture_output=True)
        stopped.append(node)

    yield stop
    for node in stopped:
        subprocess.run(["docker", "start", node], check=False, capture_output=True)
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{node}", "--timeout=240s", check=False)


def test_stopping_a_pool_node_moves_its_runner_without_losing_alerts(devstack, namespace, alerts_dir, stopped_node):
    st, cluster, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    schema = fastavro.parse_schema(read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))[0])
    apply_filter(cluster, namespace, "everything", "def everything(alert):\n    return True\n", maxAlertsPerVisit=CAP,
                 startFrom="earliest")  # no race between its first fetch and the produce below
    pod = runner_pods(cluster, namespace, "everything")[0]
    node = pod["spec"]["nodeName"]
    status = cluster.get_json("alertfilter", "everything", "-n", namespace)["status"]
    # the topic its consumer group commits on: the pool's lean topic (it reads no cutout), whose
    # producer runs on the pool's nodes too and so may move with the runner
    group, topic = status["names"]["consumerGroup"], status["inputTopic"]
    # two visits of 120 alerts each: 60 of each before the node stops, 60 after
    visit = 5_000 + int(time.time()) % 1_000_000 * 2
    start = end_offset(pool, topic)
    before = produce_batch(st, alerts_dir, copies=5, first_visit=visit, first_id=visit * 1000)
    wait_for(lambda: end_offset(pool, topic) >= start + before.alerts and committed_to_end(pool, group, topic), 300,
             "the runner to commit the first half")
    stopped_node(node)
    after = produce_batch(st, alerts_dir, copies=5, first_visit=visit, first_id=visit * 1000 + 500)
    assert before.alerts == after.alerts == 120
    moved = wait_for(lambda: [p for p in runner_pods(cluster, namespace, "everything") if p["spec"]["nodeName"] != node],
                     240, "the runner to be rescheduled on the pool's other node")
    other = cluster.get_json("node", moved[0]["spec"]["nodeName"])["metadata"]["labels"]
    assert other.get("alerts.lsst.io/pool") == "pool-a"
    wait_for(lambda: end_offset(pool, topic) >= start + 2 * before.alerts and committed_to_end(pool, group, topic), 300,
             "the moved runner to commit the second half")

    def visit_ids(values: list[bytes]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for v in values:
            a = fastavro.schemaless_reader(io.BytesIO(v[5:]), schema, None)
            out.setdefault(a["diaSource"]["visit"], []).append(a["diaSourceId"])
        return out

    stream = visit_ids([m.value() for m in read(pool, "alerts")])
    accepted = visit_ids([m.value() for m in read(pool, f"{namespace}.everything")])
    for v in (visit, visit + 1):
        assert len(stream[v]) == 120
        # every alert the filter accepts, at least once (a batch replayed after the move may repeat some)
        assert set(accepted[v]) == set(stream[v][:CAP]), f"visit {v}: lost or extra alerts across the move"
