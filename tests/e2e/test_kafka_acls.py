"""A filter's Kafka credentials on the real local stack: the pool broker authenticates with SASL
SCRAM-SHA-512 and enforces the ACLs of the KafkaUser the operator wrote for the filter, applied by the
Strimzi stand-in (``alertfilter_devstack.standin_users``).

Each filter's identity is read the way its runner gets it, never from naming rules: the user name,
the Secret holding the password and the consumer group from its runner pod's environment, the
password from that Secret, the topics from the AlertFilter's status. The probes
(``alertfilter_devstack.kafkaprobe``) connect from the host to the same broker the runners reach
through the broker pods (its loopback SASL listener: same credentials, same authorizer).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from alertfilter_devstack import kafkaprobe as probe

from .conftest import apply_filter, condition, runner_pods, wait_for

NOTHING = "def nothing(alert):\n    return False\n"
FILTERS = ("alpha", "beta", "gamma")  # gamma is deleted by the last test


@pytest.fixture(scope="module")
def filters(devstack) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """(namespace, {filter name: identity}) for three Ready filters in a fresh restricted namespace."""
    from alertfilter_devstack.stack import RESTRICTED

    st, cluster, _ = devstack
    ns = f"e2e-acl-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": RESTRICTED}}))  # fmt: skip
    try:
        for name in FILTERS:  # all at once: their runners start in parallel
            apply_filter(cluster, ns, name, NOTHING, ready=False)

        def ready(name: str) -> bool:
            return condition(cluster, ns, name, "Ready").get("status") == "True"

        wait_for(lambda: all(ready(name) for name in FILTERS), 240, "the three filters to be Ready")
        yield ns, {name: identity(st, cluster, ns, name) for name in FILTERS}
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def identity(st: dict[str, Any], cluster, ns: str, name: str) -> dict[str, Any]:
    """What filter ``name``'s runner authenticates with and works on: ``config`` (librdkafka settings
    for the pool broker), ``user``, ``group``, and the ``input``, ``output`` and ``deadletter`` topics."""
    status = cluster.get_json("alertfilter", name, "-n", ns)["status"]
    pod = wait_for(lambda: runner_pods(cluster, ns, name), 120, f"a running pod of {name}")[0]
    containers = pod["spec"]["containers"]
    runner = next(c for c in containers if any(e["name"] == "ALERTFILTER_GROUP" for e in c.get("env", [])))
    env = {e["name"]: e for e in runner["env"]}
    assert env["ALERTFILTER_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    ref = env["ALERTFILTER_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    secret = cluster.get_json("secret", ref["name"], "-n", ns)
    user = env["ALERTFILTER_KAFKA_SASL_USERNAME"]["value"]
    return {
        "user": user,
        "group": env["ALERTFILTER_GROUP"]["value"],
        "input": status["inputTopic"],
        "output": status["outputTopic"],
        "deadletter": status["deadLetterTopic"],
        "config": {
            "bootstrap.servers": st["kafka_pool"]["sasl_bootstrap"],
            "security.protocol": env["ALERTFILTER_KAFKA_SECURITY_PROTOCOL"]["value"],
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": base64.b64decode(secret["data"][ref["key"]]).decode(),
        },
    }


def test_a_filters_credentials_work_for_what_its_runner_does(filters):
    _, ids = filters
    me = ids["alpha"]
    assert probe.connect(me["config"]) == probe.OK
    assert probe.read(me["config"], me["input"], me["group"]) == probe.OK
    assert probe.connect({**me["config"], "sasl.password": me["config"]["sasl.password"] + "x"}) == "_AUTHENTICATION"


def test_a_filter_cannot_read_another_filters_output(filters):
    _, ids = filters
    me, other = ids["alpha"], ids["beta"]
    assert probe.read(me["config"], other["output"], me["group"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.read(me["config"], other["deadletter"], me["group"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.read(me["config"], me["output"], me["group"]) == "TOPIC_AUTHORIZATION_FAILED"  # write-only


def test_a_filter_cannot_write_the_input_or_another_topic(filters):
    _, ids = filters
    me, other = ids["alpha"], ids["beta"]
    assert probe.write(me["config"], me["input"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.write(me["config"], other["output"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.write(me["config"], other["deadletter"]) == "TOPIC_AUTHORIZATION_FAILED"


def test_a_filter_cannot_create_topics(filters):
    ns, ids = filters
    me = ids["alpha"]
    assert probe.create_topic(me["config"], f"{ns}.alpha-extra") == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.create_topic(me["config"], f"{me['output']}-2") == "TOPIC_AUTHORIZATION_FAILED"


def test_a_filter_cannot_join_another_filters_consumer_group(filters):
    _, ids = filters
    me, other = ids["alpha"], ids["beta"]
    assert me["group"] != other["group"]
    assert probe.join(me["config"], me["input"], other["group"]) == "GROUP_AUTHORIZATION_FAILED"


def test_a_deleted_filters_credentials_stop_working(devstack, filters):
    _, cluster, _ = devstack
    ns, ids = filters
    doomed = ids["gamma"]
    assert probe.connect(doomed["config"]) == probe.OK
    cluster.kubectl("delete", "alertfilter", "gamma", "-n", ns, "--wait=true", "--timeout=120s")
    wait_for(lambda: probe.connect(doomed["config"], timeout_s=5) == "_AUTHENTICATION", 120,
             "the deleted filter's credentials to be refused")  # fmt: skip
    # and its KafkaUser's ACLs went with it: the same name with a guessed password gets nowhere either
    assert probe.read({**doomed["config"], "sasl.password": "x"}, doomed["input"], doomed["group"]) != probe.OK
    # the others are untouched
    assert probe.read(ids["alpha"]["config"], ids["alpha"]["input"], ids["alpha"]["group"]) == probe.OK
