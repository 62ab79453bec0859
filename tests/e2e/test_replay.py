"""Start position and replay end to end on kind: a new filter sees only the alerts produced after it
is Ready (startFrom: latest), setting spec.replayFrom on the running filter writes the replayed
alerts to its output topic again (the cap counted afresh), status.replay records the request and
its completion, and `kubectl get alertfilters` shows the lag and the last accepted alert."""

from __future__ import annotations

import datetime as dt
import io
import json
import time

import fastavro

from alertfilter.codecs import read_container

from .conftest import CAP, apply_filter, committed_to_end, produce_batch, read, wait_for


def test_a_replay_writes_the_alerts_again_once_and_the_status_records_it(devstack, namespace, alerts_dir):
    st, cp, _ = devstack
    pool = st["kafka_pool"]["bootstrap"]
    schema = fastavro.parse_schema(read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))[0])

    def visits(msgs) -> dict[int, int]:
        out: dict[int, int] = {}
        for m in msgs:
            v = fastavro.schemaless_reader(io.BytesIO(m.value()[5:]), schema, None)["diaSource"]["visit"]
            out[v] = out.get(v, 0) + 1
        return out

    visit = 7_000_000 + int(time.time()) % 1_000_000 * 2
    early = produce_batch(st, alerts_dir, copies=1, first_visit=visit - 2, first_id=visit * 1000 - 5000)
    apply_filter(cp, namespace, "again", "def everything(alert):\n    return True\n", maxAlertsPerVisit=CAP)
    af = cp.get_json("alertfilter", "again", "-n", namespace)
    assert af["spec"]["startFrom"] == "latest"
    group = af["status"]["names"]["consumerGroup"]
    before = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=2)
    produce_batch(st, alerts_dir, copies=5, first_visit=visit, first_id=visit * 1000)  # two visits of 60
    topic = af["status"]["inputTopic"]  # the pool's lean topic for this filter (it reads no cutout)
    wait_for(lambda: committed_to_end(pool, group, topic), 300, "the runner to process the new alerts")
    first = visits(read(pool, f"{namespace}.again"))
    assert first == {visit: CAP, visit + 1: CAP}, first  # latest: nothing of the earlier alerts
    assert early.visits and visit - 2 not in first

    since = before.strftime("%Y-%m-%dT%H:%M:%SZ")
    cp.kubectl("patch", "alertfilter", "again", "-n", namespace, "--type=merge",
               "-p", json.dumps({"spec": {"replayFrom": since}}))
    replay = wait_for(lambda: ((cp.get_json("alertfilter", "again", "-n", namespace).get("status") or {})
                               .get("replay") or {}).get("completedAt") and
                      cp.get_json("alertfilter", "again", "-n", namespace)["status"]["replay"], 300,
                      "status.replay to record the replay's completion")
    assert replay["from"] == since and replay["partitions"] and replay["requestedAt"] <= replay["completedAt"]
    wait_for(lambda: visits(read(pool, f"{namespace}.again")) == {visit: 2 * CAP, visit + 1: 2 * CAP}, 300,
             "the replayed alerts on the output topic (the cap counted afresh)")

    # the runner restarted: the same request is not carried out again
    cp.kubectl("rollout", "restart", "deployment/af-again", "-n", namespace)
    cp.kubectl("rollout", "status", "deployment/af-again", "-n", namespace, "--timeout=180s")
    time.sleep(15)
    assert visits(read(pool, f"{namespace}.again")) == {visit: 2 * CAP, visit + 1: 2 * CAP}

    wait_for(lambda: (s := cp.get_json("alertfilter", "again", "-n", namespace)["status"]).get("lastAcceptedTime")
             and s.get("lag") == 0, 120, "status.lag (0: all processed) and status.lastAcceptedTime")
    table = cp.kubectl("get", "alertfilters", "-n", namespace).stdout
    assert "LAG" in table and "LAST ACCEPTED" in table
