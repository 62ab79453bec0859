"""The Strimzi stand-in's user operator against a real broker that enforces what it writes: KRaft with
SASL SCRAM-SHA-512 and the ``StandardAuthorizer`` (``alertfilter_devstack.useroperator``; no Kubernetes).

Every check uses a real client with the user's own credentials (``alertfilter_devstack.kafkaprobe``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from alertfilter_devstack import kafkaprobe as probe
from alertfilter_devstack import useroperator as uo
from alertfilter_devstack.kafka import KafkaBroker
from alertfilter_devstack.kafkaauth import BrokerAuth, ScramUser
from alertfilter_devstack.useroperator import UserSpecError

pytestmark = pytest.mark.timeout(300)

ADMIN = ScramUser("test-admin", uuid.uuid4().hex)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker whose only client listener is SASL SCRAM-SHA-512, with one super user."""
    b = KafkaBroker(tmp_path_factory.mktemp("kafka-scram"), auth=BrokerAuth((ADMIN,)))
    try:
        b.start()
    except Exception as exc:  # noqa: BLE001 - report why, then fail (never skip)
        pytest.fail(f"the SCRAM Kafka broker did not start: {exc}")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def admin(broker: KafkaBroker) -> AdminClient:
    return AdminClient({**broker.client_config(), "log_level": 3})


@pytest.fixture
def names(broker: KafkaBroker, admin: AdminClient) -> dict[str, str]:
    """Fresh user, topics and groups for one test; the topics exist (created by the super user)."""
    t = f"t{uuid.uuid4().hex[:8]}"
    n = {"user": f"{t}-user", "input": f"{t}.alerts", "output": f"{t}.out", "other": f"{t}.other-out",
         "group": f"{t}-group", "other_group": f"{t}-other-group"}  # fmt: skip
    assert probe.create_topic(broker.client_config(), n["input"]) == probe.OK
    assert probe.create_topic(broker.client_config(), n["output"]) == probe.OK
    assert probe.create_topic(broker.client_config(), n["other"]) == probe.OK
    assert probe.write(broker.client_config(), n["input"]) == probe.OK  # something to read
    return n


def filter_user_spec(n: dict[str, str]) -> dict[str, Any]:
    """A KafkaUser spec shaped like the operator's for a filter (builders/filter_kafka.py)."""

    def acl(rtype: str, name: str, ops: list[str], pattern: str = "literal") -> dict[str, Any]:
        return {"resource": {"type": rtype, "name": name, "patternType": pattern}, "operations": ops}

    return {
        "authentication": {"type": "scram-sha-512"},
        "authorization": {
            "type": "simple",
            "acls": [
                acl("topic", n["input"], ["Read", "Describe"]),
                acl("group", n["group"], ["Read"]),
                acl("topic", n["output"], ["Write", "Describe"]),
                acl("transactionalId", f"tx-{n['group']}", ["Write", "Describe"], "prefix"),
            ],
        },
    }


def creds(broker: KafkaBroker, user: str, password: str) -> dict[str, str]:
    return {"bootstrap.servers": broker.bootstrap, **ScramUser(user, password).client_config()}


def acl_rows(admin: AdminClient, user: str) -> set[tuple[str, str, str, str, str, str]]:
    """The user's ACLs on the broker as (resource type, name, pattern, host, operation, permission)."""
    return {
        (_name(b.restype), b.name, _name(b.resource_pattern_type), b.host, _name(b.operation), _name(b.permission_type))
        for b in uo.user_acls(admin, user)
    }


def _name(value: object) -> str:
    """An enum member's name (confluent_kafka types the fields as ``Enum | str | int``)."""
    return value.name if isinstance(value, Enum) else str(value)


def test_the_broker_refuses_clients_without_valid_credentials(broker):
    assert probe.connect({"bootstrap.servers": broker.bootstrap}, timeout_s=5) != probe.OK
    assert probe.connect({**broker.client_config(), "sasl.password": "wrong"}) == "_AUTHENTICATION"
    assert probe.connect(creds(broker, "nobody", "nothing")) == "_AUTHENTICATION"
    assert probe.connect(broker.client_config()) == probe.OK


def test_a_users_credentials_are_created_and_work(broker, admin, names):
    password = uo.generate_password()
    assert probe.connect(creds(broker, names["user"], password)) == "_AUTHENTICATION"  # not yet
    uo.sync_user(admin, names["user"], filter_user_spec(names), password)
    mine = creds(broker, names["user"], password)
    assert probe.connect(mine) == probe.OK
    assert probe.read(mine, names["input"], names["group"]) == probe.OK
    assert probe.write(mine, names["output"]) == probe.OK
    assert probe.join(mine, names["input"], names["group"]) == probe.OK
    assert probe.connect({**mine, "sasl.password": password + "x"}) == "_AUTHENTICATION"


def test_the_acls_are_exactly_the_kafkausers(broker, admin, names):
    user = names["user"]
    # a rule left over from elsewhere for the same principal is not the KafkaUser's: it goes
    stray = {
        "authorization": {"acls": [{"resource": {"type": "topic", "name": names["other"]}, "operations": ["Read"]}]}
    }
    uo.sync_acls(admin, user, uo.acl_bindings(user, stray))
    password = uo.generate_password()
    assert uo.sync_user(admin, user, filter_user_spec(names), password) == (7, 1)
    assert acl_rows(admin, user) == {
        ("TOPIC", names["input"], "LITERAL", "*", "READ", "ALLOW"),
        ("TOPIC", names["input"], "LITERAL", "*", "DESCRIBE", "ALLOW"),
        ("GROUP", names["group"], "LITERAL", "*", "READ", "ALLOW"),
        ("TOPIC", names["output"], "LITERAL", "*", "WRITE", "ALLOW"),
        ("TOPIC", names["output"], "LITERAL", "*", "DESCRIBE", "ALLOW"),
        ("TRANSACTIONAL_ID", f"tx-{names['group']}", "PREFIXED", "*", "WRITE", "ALLOW"),
        ("TRANSACTIONAL_ID", f"tx-{names['group']}", "PREFIXED", "*", "DESCRIBE", "ALLOW"),
    }
    # and the broker enforces them: nothing the rules do not grant
    mine = creds(broker, user, password)
    assert probe.read(mine, names["other"], names["group"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.read(mine, names["output"], names["group"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.write(mine, names["input"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.write(mine, names["other"]) == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.create_topic(mine, f"{names['output']}-new") == "TOPIC_AUTHORIZATION_FAILED"
    assert probe.join(mine, names["input"], names["other_group"]) == "GROUP_AUTHORIZATION_FAILED"


def test_cluster_prefix_and_deny_rules_map_as_strimzi_defines_them(admin, names):
    spec = {"authorization": {"type": "simple", "acls": [
        {"resource": {"type": "cluster"}, "operations": ["Describe", "DescribeConfigs"]},
        {"resource": {"type": "topic", "name": "pre", "patternType": "prefix"}, "operation": "All"},
        {"resource": {"type": "group", "name": "*"}, "operations": ["Read"], "type": "deny", "host": "10.0.0.1"},
    ]}}  # fmt: skip
    uo.sync_user(admin, names["user"], spec, None)
    assert acl_rows(admin, names["user"]) == {
        ("BROKER", "kafka-cluster", "LITERAL", "*", "DESCRIBE", "ALLOW"),
        ("BROKER", "kafka-cluster", "LITERAL", "*", "DESCRIBE_CONFIGS", "ALLOW"),
        ("TOPIC", "pre", "PREFIXED", "*", "ALL", "ALLOW"),
        ("GROUP", "*", "LITERAL", "10.0.0.1", "READ", "DENY"),
    }


def test_a_changed_spec_resyncs_the_acls(broker, admin, names):
    user, password = names["user"], uo.generate_password()
    spec = filter_user_spec(names)
    uo.sync_user(admin, user, spec, password)
    mine = creds(broker, user, password)
    assert probe.write(mine, names["output"]) == probe.OK
    assert probe.write(mine, names["other"]) == "TOPIC_AUTHORIZATION_FAILED"
    # the output moves to another topic: the old rule goes, the new one comes
    spec["authorization"]["acls"][2]["resource"]["name"] = names["other"]
    created, deleted = uo.sync_user(admin, user, spec, password)
    assert (created, deleted) == (2, 2)
    assert ("TOPIC", names["output"], "LITERAL", "*", "WRITE", "ALLOW") not in acl_rows(admin, user)
    assert probe.write(mine, names["other"]) == probe.OK
    assert probe.write(mine, names["output"]) == "TOPIC_AUTHORIZATION_FAILED"
    # unchanged spec: nothing to do
    assert uo.sync_user(admin, user, spec, password) == (0, 0)


def test_a_new_password_replaces_the_old_one(broker, admin, names):
    user, old, new = names["user"], uo.generate_password(), uo.generate_password()
    uo.sync_user(admin, user, filter_user_spec(names), old)
    uo.sync_user(admin, user, filter_user_spec(names), new)
    assert probe.connect(creds(broker, user, new)) == probe.OK
    assert probe.connect(creds(broker, user, old)) == "_AUTHENTICATION"


def test_a_deleted_users_credentials_stop_working(broker, admin, names):
    user, password = names["user"], uo.generate_password()
    uo.sync_user(admin, user, filter_user_spec(names), password)
    mine = creds(broker, user, password)
    assert probe.read(mine, names["input"], names["group"]) == probe.OK
    uo.delete_user(admin, user)
    assert uo.user_acls(admin, user) == set()
    assert probe.connect(mine) == "_AUTHENTICATION"
    assert probe.read(mine, names["input"], names["group"]) != probe.OK
    uo.delete_user(admin, user)  # deleting again (a retried delete handler) is fine


def test_a_spec_that_cannot_be_applied_changes_nothing(broker, admin, names):
    user, password = names["user"], uo.generate_password()
    uo.sync_user(admin, user, filter_user_spec(names), password)
    before = acl_rows(admin, user)
    bad = filter_user_spec(names)
    bad["authorization"]["acls"].append({"resource": {"type": "topic", "name": "x"}, "operations": ["Fly"]})
    with pytest.raises(UserSpecError, match="Fly"):
        uo.sync_user(admin, user, bad, uo.generate_password())
    with pytest.raises(UserSpecError, match="tls"):
        uo.sync_user(admin, user, {**filter_user_spec(names), "authentication": {"type": "tls"}}, None)
    assert acl_rows(admin, user) == before
    assert probe.connect(creds(broker, user, password)) == probe.OK
