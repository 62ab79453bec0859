"""The operator's JMX exporter rules on a real MirrorMaker 2 (Kafka 4.1.1's connect-mirror, dedicated
mode) running the real JMX Prometheus exporter agent, as Strimzi runs it for a KafkaMirrorMaker2
with a metricsConfig: the series the dashboard's mirror panels query are there, with the labels
the panels use.

One real broker plays both clusters (``central`` and the pool's ``pool-a-kafka``): the mirror copies
``<prefix>.alerts`` to ``central.<prefix>.alerts`` (the default replication policy, so it never
copies its own copies).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from alertfilter_devstack.kafka import java_bin, kafka_libs
from alertfilter_devstack.procs import free_port, stop_process
from alertfilter_operator.builders.mirror_metrics import exporter_config

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "alert-filter-operator" / "dashboards" / "alertfilter.json"
pytestmark = pytest.mark.timeout(600)


def agent_jar() -> str:
    r = subprocess.run(["bash", str(ROOT / "hack" / "fetch-jmx-exporter.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"the JMX exporter agent is not available (hack/fetch-jmx-exporter.sh): {r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def samples(text: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


@pytest.fixture(scope="module")
def scrape(kafka, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, str]]]:
    """What the mirror's agent serves once it has copied records and its consumer reports lag."""
    jar = agent_jar()
    work = tmp_path_factory.mktemp("mirror-metrics")
    topic = f"t{time.time_ns() % 10**10}.alerts"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})

    def produce(n: int) -> None:
        for i in range(n):
            producer.produce(topic, value=b"x" * 1000, key=str(i))
        producer.flush(30)

    produce(2000)
    config = work / "metrics-config.yml"
    config.write_text(exporter_config())
    props = work / "mm2.properties"
    props.write_text(
        "\n".join(
            [
                "clusters = central, pool-a-kafka",
                f"central.bootstrap.servers = {kafka.bootstrap}",
                f"pool-a-kafka.bootstrap.servers = {kafka.bootstrap}",
                "central->pool-a-kafka.enabled = true",
                f"central->pool-a-kafka.topics = {re.escape(topic)}",
                "central.consumer.auto.offset.reset = earliest",
                *(
                    f"{k}.replication.factor = 1"
                    for k in ("offset-syncs.topic", "offset.storage", "status.storage", "config.storage")
                ),
                "replication.factor = 1",
                "emit.heartbeats.enabled = false",
                "emit.checkpoints.enabled = false",
                "sync.topic.acls.enabled = false",
                "refresh.topics.interval.seconds = 5",
                "dedicated.mode.enable.internal.rest = false",
                "tasks.max = 1",
            ]
        )
        + "\n"
    )
    port = free_port()
    log = work / "mm2.log"
    jvm = [java_bin(), "-Xmx384m", "-XX:TieredStopAtLevel=1", f"-javaagent:{jar}={port}:{config}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*jvm, "-cp", f"{kafka_libs()}/*", "org.apache.kafka.connect.mirror.MirrorMaker", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline, got = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            time.sleep(5)
            produce(200)  # keep records coming: the latency and lag metrics need recent records
            try:
                got = samples(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
            except OSError:
                continue
            latency = got.get("kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max", [])
            lag = [s for s in got.get("kafka_consumer_fetch_manager_records_lag", []) if s.get("topic") == topic]
            if len(latency) == 2 and lag:
                return {"topic": [{"name": topic}], **got}
        pytest.fail(f"the mirror's metrics did not appear in 240 s; its log:\n{log.read_text()[-3000:]}")
    finally:
        stop_process(proc, grace_s=20)


def test_the_mirror_exports_its_latency_per_mirrored_partition(scrape) -> None:
    topic = scrape["topic"][0]["name"]
    latency = scrape["kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max"]
    assert sorted((s["source"], s["target"], s["topic"], s["partition"]) for s in latency) == [
        ("central", "pool-a-kafka", f"central.{topic}", "0"),
        ("central", "pool-a-kafka", f"central.{topic}", "1"),
    ]
    for name in ("record_age_ms_max", "record_count", "byte_rate"):
        assert f"kafka_connect_mirror_mirrorsourceconnector_{name}" in scrape, name
    assert {"connector": "MirrorSourceConnector", "task": "0", "status": "running"} in scrape[
        "kafka_connect_connector_status"
    ]


def test_the_source_consumers_lag_is_there_per_partition_and_twice_for_a_dotted_topic(scrape) -> None:
    topic = scrape["topic"][0]["name"]
    lag = scrape["kafka_consumer_fetch_manager_records_lag"]
    source = [s for s in lag if s["topic"] in (topic, topic.replace(".", "_"))]
    assert {s["partition"] for s in source} == {"0", "1"} and all(s["clientid"] for s in source)
    # Kafka 4.1 also reports a dotted topic under its '_' name (the dashboard's max-by counts it once)
    assert len(source) == 4
    assert any("clientid" in s and len(s) == 1 for s in scrape["kafka_consumer_fetch_manager_records_lag_max"])


def test_every_series_the_mirror_panels_query_is_exported(scrape) -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] if p["type"] != "row" and "Mirror" in p["title"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(kafka_[a-z_]+)", e)}
    assert names and all(n in scrape for n in names), names - set(scrape)
    # nothing but the rules' kafka_ series (no catch-all: Connect's hundreds of worker metrics stay out)
    kafka_names = {n for n in scrape if n.startswith("kafka_")}
    allowed = r"kafka_(connect_mirror_mirrorsourceconnector|consumer_fetch_manager|producer|connect_connector_status)"
    assert all(re.match(allowed, n) for n in kafka_names), kafka_names
