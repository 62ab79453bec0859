"""Deleting leaves nothing behind: a filters' namespace (its runners, its topics and users in the
Kafka namespace, their topics on the broker) and, last of the session, the FilterPool (its pool
Kafka, broker pods, MirrorMaker 2 and its process)."""

from __future__ import annotations

import os

from confluent_kafka import Consumer

from .conftest import apply_filter, runner_pods, wait_for

OWNER_NS = "alerts.lsst.io/owner-namespace"


def _topics(bootstrap: str) -> set[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-topics", "log_level": 3})
    try:
        return set(c.list_topics(timeout=10).topics)
    finally:
        c.close()


def _strimzi_children(cluster, selector: str) -> list[str]:
    r = cluster.get_json("kafkatopics,kafkausers,kafkas,kafkanodepools,kafkamirrormaker2s", "-n", "kafka", "-l", selector)
    return [f"{i['kind']}/{i['metadata']['name']}" for i in r["items"]]


def test_deleting_a_filters_namespace_leaves_no_orphan(devstack, namespace):
    st, cluster, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    apply_filter(cluster, namespace, "doomed", "def doomed(alert):\n    return False\n")
    assert _strimzi_children(cluster, f"{OWNER_NS}={namespace}")
    assert f"{namespace}.doomed" in _topics(pool)
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=240s")
    assert not runner_pods(cluster, namespace, "doomed", running=False)
    wait_for(lambda: not _strimzi_children(cluster, f"{OWNER_NS}={namespace}"), 120,
             "the namespace's KafkaTopics and KafkaUsers to go")
    wait_for(lambda: not {t for t in _topics(pool) if t.startswith(f"{namespace}.")}, 120,
             "the namespace's topics to leave the broker")


def test_deleting_the_filterpool_leaves_no_orphan(devstack):
    st, cluster, d = devstack
    pool = cluster.get_json("filterpool", "pool-a")
    uid = pool["metadata"]["uid"]
    assert _strimzi_children(cluster, f"alerts.lsst.io/owner-uid={uid}")
    assert cluster.get_json("pods", "-n", "kafka", "-l", "strimzi.io/cluster=pool-a-kafka")["items"]
    mm2_pids = [int(p.read_text()) for p in (d / "mirrormaker2").glob("*.pid")]
    assert mm2_pids, "no MirrorMaker 2 process ran"
    # filters still on the pool would hold it: remove them first, as a user would
    for af in cluster.get_json("alertfilters", "-A")["items"]:
        if (af.get("status") or {}).get("pool") == "pool-a" or af["spec"].get("pool") == "pool-a":
            cluster.kubectl("delete", "alertfilter", af["metadata"]["name"], "-n", af["metadata"]["namespace"],
                            "--wait=true", "--timeout=120s", check=False)
    cluster.kubectl("delete", "filterpool", "pool-a", "--wait=true", "--timeout=240s")
    wait_for(lambda: not _strimzi_children(cluster, f"alerts.lsst.io/owner-uid={uid}"), 180,
             "the pool's Kafka, node pool and MirrorMaker 2 to go")
    wait_for(lambda: not cluster.get_json("pods,services", "-n", "kafka", "-l", "strimzi.io/cluster=pool-a-kafka")["items"],
             180, "the pool's broker pods and bootstrap Service to go")

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
    wait_for(lambda: not any(alive(p) for p in mm2_pids), 120, "the MirrorMaker 2 process to stop")
    # the stack's pool comes back for whoever uses the cluster next
    cluster.kubectl("apply", "-f", st["filterpool"])
