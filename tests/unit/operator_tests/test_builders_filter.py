"""The children the operator builds for an AlertFilter, as a user sees them with kubectl."""

from __future__ import annotations

from typing import Any

from alertfilter_operator.builders import (
    FilterRef,
    PoolInfo,
    build_configmap,
    build_credentials_secret,
    build_dead_letter_topic,
    build_deployment,
    build_kafka_user,
    build_network_policy,
    build_output_topic,
    runner_env,
)

from .conftest import SOURCE, filter_ref, pool_spec
from .helpers import env_dict


def test_pool_info_uses_the_bootstrap_address_strimzi_published(pool: PoolInfo) -> None:
    assert pool.bootstrap == "pool-a-kafka-kafka-bootstrap.kafka-a.svc:9092"
    published = {"listeners": [{"name": "plain", "bootstrapServers": "10.0.0.5:9092"}]}
    assert PoolInfo.from_spec("pool-a", pool_spec(), published).bootstrap == "10.0.0.5:9092"
    assert (pool.kafka_cluster, pool.kafka_namespace, pool.input_topic) == ("pool-a-kafka", "kafka-a", "alerts")


def test_configmap_carries_the_source_and_its_hash(ref: FilterRef) -> None:
    cm = build_configmap(ref)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "af-bright", "science")
    assert cm["data"] == {"filter.py": SOURCE}
    assert cm["metadata"]["annotations"]["alerts.lsst.io/source-sha256"] == "ab12"
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "alert-filter-operator"


def test_output_and_dead_letter_topics_live_on_the_pool_kafka(ref: FilterRef, pool: PoolInfo) -> None:
    out, dlq = build_output_topic(ref, pool), build_dead_letter_topic(ref, pool)
    assert (
        out["metadata"]["name"] == "af.science.bright.output"
        and dlq["metadata"]["name"] == "af.science.bright.deadletter"
    )
    assert out["metadata"]["namespace"] == dlq["metadata"]["namespace"] == "kafka-a"
    assert out["spec"]["topicName"] == "science.bright"
    assert dlq["spec"]["topicName"] == "science.bright.deadletter"
    assert out["metadata"]["labels"]["strimzi.io/cluster"] == "pool-a-kafka"
    # the owner is named by labels: ownerReferences cannot cross namespaces
    assert out["metadata"]["labels"]["alerts.lsst.io/owner-uid"] == "uid-1"
    assert out["spec"]["replicas"] == 3 and out["spec"]["config"]["min.insync.replicas"] == 2
    assert out["spec"]["config"]["max.message.bytes"] == 4 * 1024 * 1024


def test_topic_settings_follow_spec_output_and_a_small_pool() -> None:
    ref = filter_ref(output={"topic": "my.out", "partitions": 6, "retentionMs": 3_600_000})
    small = PoolInfo.from_spec("p", pool_spec(kafka={"namespace": "k", "replicas": 1}))
    t = build_output_topic(ref, small)
    assert t["spec"]["topicName"] == "my.out" and t["spec"]["partitions"] == 6
    assert t["spec"]["replicas"] == 1 and t["spec"]["config"]["min.insync.replicas"] == 1
    assert t["spec"]["config"]["retention.ms"] == 3_600_000
    assert build_dead_letter_topic(ref, small)["spec"]["topicName"] == "my.out.deadletter"


def test_kafka_user_may_read_the_input_and_write_only_its_own_topics(ref: FilterRef, pool: PoolInfo) -> None:
    user = build_kafka_user(ref, pool)
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    acls = {
        (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]): sorted(a["operations"])
        for a in user["spec"]["authorization"]["acls"]
    }
    assert acls == {
        ("topic", "alerts", "literal"): ["Describe", "Read"],
        ("group", "alertfilter.science.bright.uid-1", "literal"): ["Read"],
        ("topic", "science.bright", "literal"): ["Describe", "Write"],
        ("topic", "science.bright.deadletter", "literal"): ["Describe", "Write"],
        ("transactionalId", "alertfilter-alertfilter.science.bright.uid-1", "prefix"): ["Describe", "Write"],
    }


def test_credentials_secret_is_in_the_filter_namespace(ref: FilterRef) -> None:
    secret = build_credentials_secret(ref, "s3cret")
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == ("af-bright-kafka", "science")
    assert secret["stringData"] == {"username": "af.science.bright", "password": "s3cret"}


def test_runner_env_says_what_alertfilter_run_needs(ref: FilterRef, pool: PoolInfo) -> None:
    env = env_dict(runner_env(ref, pool, schema_registry="http://registry:8081"))
    assert env["ALERTFILTER_FILTER"] == "/etc/alertfilter/filter.py"
    assert env["ALERTFILTER_BOOTSTRAP_SERVERS"] == pool.bootstrap
    assert (env["ALERTFILTER_INPUT"], env["ALERTFILTER_OUTPUT"]) == ("alerts", "science.bright")
    assert env["ALERTFILTER_DEAD_LETTER_TOPIC"] == "science.bright.deadletter"
    assert env["ALERTFILTER_GROUP"] == "alertfilter.science.bright.uid-1"
    assert env["ALERTFILTER_MAX_ALERTS_PER_VISIT"] == "20"
    assert (env["ALERTFILTER_VISIT_FIELD"], env["ALERTFILTER_FILTER_TIMEOUT"]) == ("diaSource.visit", "1")
    assert env["ALERTFILTER_SCHEMA_REGISTRY"] == "http://registry:8081"
    assert env["ALERTFILTER_KAFKA_SASL_USERNAME"] == "af.science.bright"
    # the password never appears in the Deployment: it comes from the Secret
    assert env["ALERTFILTER_KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": "af-bright-kafka", "key": "password"}}
    assert "ALERTFILTER_ENTRYPOINT" not in env and "ALERTFILTER_EXACTLY_ONCE" not in env


def test_runner_env_for_no_cap_an_entrypoint_exactly_once_and_no_authentication() -> None:
    ref = filter_ref(maxAlertsPerVisit=0, entrypoint="bright", exactlyOnce=True, filterTimeoutSeconds=2.5)
    open_pool = PoolInfo.from_spec("p", pool_spec(kafka={"namespace": "k", "authentication": "none"}))
    env = env_dict(runner_env(ref, open_pool, schema_dir="/schemas"))
    assert env["ALERTFILTER_NO_VISIT_CAP"] == "true" and "ALERTFILTER_MAX_ALERTS_PER_VISIT" not in env
    assert (env["ALERTFILTER_ENTRYPOINT"], env["ALERTFILTER_EXACTLY_ONCE"]) == ("bright", "true")
    assert env["ALERTFILTER_FILTER_TIMEOUT"] == "2.5"
    assert env["ALERTFILTER_SCHEMA_DIR"] == "/schemas" and "ALERTFILTER_SCHEMA_REGISTRY" not in env
    assert not any(k.startswith("ALERTFILTER_KAFKA_") for k in env)


def _pod(dep: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


def test_deployment_runs_on_the_pool_nodes_confined_and_probed(ref: FilterRef, pool: PoolInfo) -> None:
    dep = build_deployment(ref, pool, "runner:1", "http://registry:8081")
    pod = _pod(dep)
    (ctr,) = pod["containers"]
    assert dep["spec"]["replicas"] == 1
    assert pod["nodeSelector"] == {"alerts.lsst.io/pool": "pool-a"}
    assert pod["tolerations"] == [
        {"key": "alerts.lsst.io/pool", "operator": "Equal", "value": "pool-a", "effect": "NoSchedule"}
    ]
    assert (ctr["image"], ctr["args"]) == ("runner:1", ["run"])
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ctr["resources"] == {
        "requests": {"cpu": "150m", "memory": "384Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert {"name": "filter", "configMap": {"name": "af-bright"}} in pod["volumes"]
    # a new source changes the pod template, so the runner rolls
    assert dep["spec"]["template"]["metadata"]["annotations"]["alerts.lsst.io/source-sha256"] == "ab12"
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_deployment_follows_suspend_replicas_and_resources(pool: PoolInfo) -> None:
    assert build_deployment(filter_ref(suspend=True, replicas=3), pool, "img")["spec"]["replicas"] == 0
    assert build_deployment(filter_ref(replicas=3), pool, "img")["spec"]["replicas"] == 3
    custom = filter_ref(resources={"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}})
    (ctr,) = _pod(build_deployment(custom, pool, "img", image_pull_policy="Always"))["containers"]
    # a limit the spec leaves out is the default one: no runner pod is ever without a CPU limit
    assert ctr["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    assert ctr["imagePullPolicy"] == "Always"


def test_a_missing_limit_is_raised_to_a_larger_request(pool: PoolInfo) -> None:
    big = filter_ref(resources={"requests": {"cpu": "2", "memory": "3Gi"}})
    (ctr,) = _pod(build_deployment(big, pool, "img"))["containers"]
    assert ctr["resources"]["limits"] == {"cpu": "2", "memory": "3Gi"}


def test_network_policy_lets_runners_reach_only_kafka_dns_and_the_registry(ref: FilterRef, pool: PoolInfo) -> None:
    np = build_network_policy(ref, pool)
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    kafka_rule, dns_rule = np["spec"]["egress"]
    assert kafka_rule["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kafka-a"}
    assert kafka_rule["to"][0]["podSelector"]["matchLabels"]["strimzi.io/cluster"] == "pool-a-kafka"
    assert kafka_rule["ports"] == [{"protocol": "TCP", "port": 9092}]
    assert {p["port"] for p in dns_rule["ports"]} == {53}
    assert np["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    with_registry = build_network_policy(ref, pool, schema_registry_port=8081)
    assert with_registry["spec"]["egress"][-1] == {"ports": [{"protocol": "TCP", "port": 8081}]}
