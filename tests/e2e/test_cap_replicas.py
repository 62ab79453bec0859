"""The exact per-visit cap with replicas on real pods (issue #15): an AlertFilter with
``replicas: 3`` and ``maxAlertsPerVisit`` (its replicas send their accepted alerts to the
candidates topic, keyed by visit, and the cap stages forward the first N of each visit), alerts of
several visits produced interleaved by two producers at once, and the runner container reading the
input SIGKILLed mid-stream (every process of the container, as the kernel's OOM killer or a
``kill -9`` does; the kubelet restarts it): exactly N distinct alerts per visit on the output topic.
"""

from __future__ import annotations

import io
import subprocess
import threading
import uuid
from collections import defaultdict

import fastavro

from alertfilter.codecs import read_container

from .conftest import CAP, apply_filter, committed_to_end, end_offset, produce_batch, read, runner_pods, wait_for

#: Accepts every alert, slowly (~25 ms each): the SIGKILL lands while the stream is being read.
SLOW = "import time\n\n\ndef everything(alert):\n    time.sleep(0.025)\n    return True\n"


def _consumed(cp, ns: str, pod: str) -> float:
    try:
        text = cp.raw(f"/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/metrics")
    except RuntimeError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("alertfilter_alerts_consumed_total"))


def sigkill_container(cp, ns: str, pod: str) -> int:
    """SIGKILL every process of ``pod``'s runner container on its kind node (not the pod's sandbox);
    returns how many were killed."""
    p = cp.get_json("pod", pod, "-n", ns)
    node, uid = p["spec"]["nodeName"], p["metadata"]["uid"]
    # the pod's cgroup names its uid (with dashes, or underscores under the systemd driver)
    script = (f'n=0; for d in /proc/[0-9]*; do grep -qsE "pod({uid}|{uid.replace("-", "_")})" "$d/cgroup" || continue; '
              'tr "\\0" " " < "$d/cmdline" | grep -q "^/pause" && continue; kill -9 "${d#/proc/}" && n=$((n+1)); done; echo $n')
    r = subprocess.run(["docker", "exec", node, "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def restarts(cp, ns: str, pod: str) -> int:
    statuses = cp.get_json("pod", pod, "-n", ns)["status"].get("containerStatuses") or []
    return sum(int(s.get("restartCount", 0)) for s in statuses)


def test_three_replicas_interleaved_visits_and_a_sigkill_give_exactly_n_per_visit(devstack, namespace, alerts_dir):
    st, cp, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    apply_filter(cp, namespace, "capped", SLOW, replicas=3, maxAlertsPerVisit=CAP, startFrom="latest")
    wait_for(lambda: len(runner_pods(cp, namespace, "capped")) == 3, 300, "three running replicas")
    status = cp.get_json("alertfilter", "capped", "-n", namespace)["status"]
    assert status["names"].get("candidatesTopic"), status["names"]
    group, topic = status["names"]["consumerGroup"], status["inputTopic"]
    start = end_offset(pool, topic)

    # two producers at once: their visits' alerts interleave in the stream
    base = 20_000 + int(uuid.uuid4().int % 10**6) * 10
    firsts = (base, base + 5)
    results: dict[int, object] = {}
    threads = [threading.Thread(target=lambda v=v: results.__setitem__(v, produce_batch(
        st, alerts_dir, copies=10, first_visit=v, per_visit=60))) for v in firsts]  # fmt: skip
    for t in threads:
        t.start()

    # the replica that reads the input (the topic has one partition), once it has read some of it
    def reader() -> str | None:
        pods = [p["metadata"]["name"] for p in runner_pods(cp, namespace, "capped")]
        return next((p for p in pods if _consumed(cp, namespace, p) >= 60), None)

    victim = wait_for(reader, 300, "a replica to have read 60 alerts")
    for t in threads:
        t.join()
    produced = sum(r.alerts for r in results.values())  # type: ignore[attr-defined]
    assert produced == 480
    read_all = end_offset(pool, topic) >= start + produced and committed_to_end(pool, group, topic)
    assert not read_all, "the replicas read the whole stream before the SIGKILL: it would prove nothing"
    assert sigkill_container(cp, namespace, victim) >= 2  # the runner and its filter process
    wait_for(lambda: restarts(cp, namespace, victim) >= 1, 120, "the kubelet to restart the killed container")
    wait_for(lambda: end_offset(pool, topic) >= start + produced and committed_to_end(pool, group, topic), 420,
             "the replicas to reach the end of the input")  # fmt: skip

    schema = fastavro.parse_schema(read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))[0])
    visits = {v + i for v in firsts for i in range(4)}  # 240 alerts of each producer, 60 a visit

    def per_visit() -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for m in read(pool, f"{namespace}.capped"):
            a = fastavro.schemaless_reader(io.BytesIO(m.value()[5:]), schema, None)
            if a["diaSource"]["visit"] in visits:
                out[a["diaSource"]["visit"]].append(a["diaSourceId"])
        return out

    wait_for(lambda: all(len(set(per_visit().get(v, []))) >= CAP for v in visits), 300,
             "the cap stages to forward every visit's first N")  # fmt: skip
    got = per_visit()
    stream: dict[int, set[int]] = defaultdict(set)
    for m in read(pool, "alerts"):
        a = fastavro.schemaless_reader(io.BytesIO(m.value()[5:]), schema, None)
        if a["diaSource"]["visit"] in visits:
            stream[a["diaSource"]["visit"]].add(a["diaSourceId"])
    assert {v: len(s) for v, s in stream.items()} == dict.fromkeys(visits, 60)
    for v in visits:
        assert len(set(got[v])) == CAP, f"visit {v}: {len(set(got[v]))} distinct alerts, the cap is {CAP}"
        assert set(got[v]) <= stream[v]
