"""The children the operator builds for a FilterPool: its Kafka, node pool, mirror user and mirror."""

from __future__ import annotations

from alertfilter_operator.builders import (
    build_mirror_maker2,
    build_mirror_user,
    build_pool_kafka,
    build_pool_node_pool,
    mirror_user_name,
)

from .conftest import pool_spec

AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "alerts.lsst.io/pool", "operator": "In", "values": ["pool-a"]}]}
            ]
        }
    }
}


def test_pool_kafka_authenticates_and_authorizes_its_clients() -> None:
    kafka = build_pool_kafka("pool-a", "uid-p", pool_spec())
    assert (kafka["kind"], kafka["metadata"]["name"], kafka["metadata"]["namespace"]) == (
        "Kafka",
        "pool-a-kafka",
        "kafka-a",
    )
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["authentication"] == {"type": "scram-sha-512"} and listener["port"] == 9092
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    # forwarded alerts keep their original bytes: the brokers take up to 10 MiB
    assert config["message.max.bytes"] == 10 * 1024 * 1024
    assert kafka["metadata"]["labels"]["alerts.lsst.io/owner-name"] == "pool-a"


def test_pool_kafka_without_authentication_and_with_one_broker() -> None:
    kafka = build_pool_kafka("p", "u", pool_spec(kafka={"namespace": "k", "replicas": 1, "authentication": "none"}))
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert "authentication" not in listener and "authorization" not in kafka["spec"]["kafka"]
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 1


def test_node_pool_pins_brokers_to_the_pool_nodes_with_persistent_storage() -> None:
    np = build_pool_node_pool("pool-a", "uid-p", pool_spec())
    assert np["metadata"]["name"] == "pool-a-kafka-nodes"
    assert np["metadata"]["labels"]["strimzi.io/cluster"] == "pool-a-kafka"
    assert np["spec"]["replicas"] == 3 and np["spec"]["roles"] == ["controller", "broker"]
    assert np["spec"]["template"]["pod"]["affinity"] == AFFINITY
    assert np["spec"]["template"]["pod"]["tolerations"][0]["value"] == "pool-a"
    (volume,) = np["spec"]["storage"]["volumes"]
    assert (volume["type"], volume["size"], volume["deleteClaim"]) == ("persistent-claim", "100Gi", False)
    assert "class" not in volume and "resources" not in np["spec"]


def test_node_pool_storage_class_ephemeral_storage_and_resources() -> None:
    kafka = {"namespace": "k", "storage": {"class": "fast", "size": "1Ti"}, "resources": {"limits": {"memory": "8Gi"}}}
    np = build_pool_node_pool("p", "u", pool_spec(kafka=kafka))
    assert np["spec"]["storage"]["volumes"][0]["class"] == "fast"
    assert np["spec"]["resources"] == {"limits": {"memory": "8Gi"}}
    ephemeral = build_pool_node_pool("p", "u", pool_spec(kafka={"namespace": "k", "storage": {"type": "ephemeral"}}))
    assert ephemeral["spec"]["storage"] == {"type": "ephemeral"}


def test_mirror_user_may_write_the_mirrored_topic_and_its_own_connect_topics() -> None:
    spec = pool_spec()
    user = build_mirror_user("pool-a", "uid-p", spec)
    assert user["metadata"]["name"] == mirror_user_name("pool-a", spec) == "pool-a-kafka-mirror"
    resources = {
        (a["resource"]["type"], a["resource"].get("name"), a["resource"].get("patternType"))
        for a in user["spec"]["authorization"]["acls"]
    }
    assert resources == {
        ("topic", "alerts", "literal"),
        ("topic", "pool-a-kafka-mirror", "prefix"),
        ("group", "pool-a-kafka-mirror", "literal"),
        ("cluster", None, None),
    }


def test_mirror_maker2_copies_the_alert_topic_under_its_own_name() -> None:
    mm2 = build_mirror_maker2("pool-a", "uid-p", pool_spec())
    assert mm2["metadata"]["name"] == "pool-a-kafka-mirror"
    target = mm2["spec"]["target"]
    assert target["bootstrapServers"] == "pool-a-kafka-kafka-bootstrap.kafka-a.svc:9092"
    assert target["authentication"]["username"] == "pool-a-kafka-mirror"
    (mirror,) = mm2["spec"]["mirrors"]
    assert mirror["source"] == {"alias": "central", "bootstrapServers": "central-kafka-bootstrap.kafka.svc:9092"}
    assert mirror["topicsPattern"] == "alerts"
    assert mirror["sourceConnector"]["config"]["replication.policy.class"].endswith("IdentityReplicationPolicy")
    assert mm2["spec"]["template"]["pod"]["affinity"] == AFFINITY
    open_pool = pool_spec(kafka={"namespace": "k", "authentication": "none"})
    assert "authentication" not in build_mirror_maker2("p", "u", open_pool)["spec"]["target"]
