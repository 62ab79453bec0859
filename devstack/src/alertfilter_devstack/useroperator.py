"""What Strimzi's User Operator does on the Kafka side, through Kafka's Admin API (``confluent_kafka``).

A ``KafkaUser`` becomes a SCRAM-SHA-512 credential for ``User:<name>`` and exactly the ACLs its
``spec.authorization.acls`` lists: ACLs of that principal that the spec no longer lists are removed,
so a changed spec re-syncs. Deleting the user removes its ACLs and its credential. The Kubernetes side
(the Secret, the status) is ``standin_users.py``'s.

Strimzi's ACL rules map as follows: resource ``type`` topic / group / transactionalId / cluster
(the cluster's name is ``kafka-cluster``), ``patternType`` literal (default) / prefix, ``operations``
(or the older single ``operation``) Read, Write, Create, Delete, Alter, Describe, ClusterAction,
AlterConfigs, DescribeConfigs, IdempotentWrite, All; ``type`` allow (default) / deny; ``host``
(default ``*``).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException

# confluent_kafka.admin re-exports these from private modules without an __all__
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

#: PBKDF2 iterations of the stored credential (Kafka's minimum, and Strimzi's choice).
SCRAM_ITERATIONS = 4096
#: Length of a generated password, characters [A-Za-z0-9], as Strimzi's User Operator generates them.
PASSWORD_LENGTH = 32
#: Seconds an Admin API request may take.
TIMEOUT_S = 30.0

_RESOURCE_TYPES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactionalId": ResourceType.TRANSACTIONAL_ID,
    "cluster": ResourceType.BROKER,  # librdkafka's name for Kafka's CLUSTER resource type
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}
_OPERATIONS = {
    "Read": AclOperation.READ,
    "Write": AclOperation.WRITE,
    "Create": AclOperation.CREATE,
    "Delete": AclOperation.DELETE,
    "Alter": AclOperation.ALTER,
    "Describe": AclOperation.DESCRIBE,
    "ClusterAction": AclOperation.CLUSTER_ACTION,
    "AlterConfigs": AclOperation.ALTER_CONFIGS,
    "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
    "IdempotentWrite": AclOperation.IDEMPOTENT_WRITE,
    "All": AclOperation.ALL,
}
_PERMISSIONS = {"allow": AclPermissionType.ALLOW, "deny": AclPermissionType.DENY}
CLUSTER_NAME = "kafka-cluster"
#: A filter's "any value" for a name or host (typed ``str`` by confluent_kafka, documented as None).
_ANY: Any = None


class UserSpecError(ValueError):
    """A ``KafkaUser`` spec this stand-in cannot apply (an unknown ACL field value, TLS authentication)."""


def principal(user: str) -> str:
    """``User:<user>``: the principal of a SCRAM user, as the broker authenticates it."""
    return f"User:{user}"


def generate_password() -> str:
    """A random password of :data:`PASSWORD_LENGTH` letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))


def acl_bindings(user: str, spec: Mapping[str, Any]) -> set[AclBinding]:
    """The ACL bindings a ``KafkaUser`` spec asks for (one per operation of each rule).

    Args:
        user: the user name (the principal is ``User:<user>``).
        spec: the ``KafkaUser``'s ``spec``; without ``authorization`` the user gets no ACL.

    Raises:
        UserSpecError: an authorization type other than ``simple``, or a rule with an unknown
            resource type, pattern type, operation or permission type, or without a name.
    """
    authz = spec.get("authorization") or {}
    if not authz:
        return set()
    if authz.get("type", "simple") != "simple":
        raise UserSpecError(f"authorization type {authz.get('type')!r}: only 'simple' is supported")
    out: set[AclBinding] = set()
    for rule in authz.get("acls") or []:
        res = rule.get("resource") or {}
        rtype = _lookup(_RESOURCE_TYPES, res.get("type"), "resource type")
        if rtype is ResourceType.BROKER:
            name, pattern = CLUSTER_NAME, ResourcePatternType.LITERAL
        else:
            name = str(res.get("name") or "")
            if not name:
                raise UserSpecError(f"an ACL rule on a {res.get('type')} has no resource name")
            pattern = _lookup(_PATTERNS, res.get("patternType", "literal"), "pattern type")
        permission = _lookup(_PERMISSIONS, rule.get("type", "allow"), "ACL type")
        ops = list(rule.get("operations") or []) + ([rule["operation"]] if rule.get("operation") else [])
        for op in ops:
            out.add(
                AclBinding(
                    rtype,
                    name,
                    pattern,
                    principal(user),
                    str(rule.get("host") or "*"),
                    _lookup(_OPERATIONS, op, "operation"),
                    permission,
                )
            )
    return out


def _lookup(table: Mapping[str, Any], key: Any, what: str) -> Any:
    if key not in table:
        raise UserSpecError(f"unknown {what} {key!r}; known: {', '.join(table)}")
    return table[key]


def _principal_filter(user: str) -> AclBindingFilter:
    return AclBindingFilter(
        ResourceType.ANY,
        _ANY,
        ResourcePatternType.ANY,
        principal(user),
        _ANY,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def user_acls(admin: AdminClient, user: str) -> set[AclBinding]:
    """Every ACL binding of ``User:<user>`` on the cluster.

    Raises:
        KafkaException: the broker refused or did not answer in :data:`TIMEOUT_S`.
    """
    found = admin.describe_acls(_principal_filter(user), request_timeout=TIMEOUT_S).result()
    return set(found or [])


def _exact_filter(b: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
    )


def sync_acls(admin: AdminClient, user: str, wanted: set[AclBinding]) -> tuple[int, int]:
    """Make ``User:<user>``'s ACLs exactly ``wanted``: create the missing ones, delete the others.

    Returns:
        (created, deleted) counts.

    Raises:
        KafkaException: a request failed.
    """
    have = user_acls(admin, user)
    missing, extra = wanted - have, have - wanted
    if missing:
        for fut in admin.create_acls(sorted(missing), request_timeout=TIMEOUT_S).values():
            fut.result()
    if extra:
        for fut in admin.delete_acls([_exact_filter(b) for b in sorted(extra)], request_timeout=TIMEOUT_S).values():
            fut.result()
    return len(missing), len(extra)


def set_password(admin: AdminClient, user: str, password: str) -> None:
    """Create or replace ``user``'s SCRAM-SHA-512 credential (a fresh salt each time).

    Raises:
        KafkaException: the broker refused it (e.g. the caller is not allowed to Alter the cluster).
    """
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    alteration = UserScramCredentialUpsertion(user, info, password.encode())
    admin.alter_user_scram_credentials([alteration], request_timeout=TIMEOUT_S)[user].result()


def remove_password(admin: AdminClient, user: str) -> bool:
    """Delete ``user``'s SCRAM-SHA-512 credential. Returns False when it had none.

    Raises:
        KafkaException: any failure but the credential being absent.
    """
    deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
    try:
        admin.alter_user_scram_credentials([deletion], request_timeout=TIMEOUT_S)[user].result()
    except KafkaException as exc:
        if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == KafkaError.RESOURCE_NOT_FOUND:
            return False
        raise
    return True


def sync_user(admin: AdminClient, user: str, spec: Mapping[str, Any], password: str | None) -> tuple[int, int]:
    """Apply a ``KafkaUser``: its credential (with ``password``; for a spec without authentication,
    no credential, as Strimzi) and exactly its ACLs.

    Args:
        password: the clear-text password for ``scram-sha-512`` authentication; None when the spec
            has no authentication.

    Returns:
        (ACLs created, ACLs deleted).

    Raises:
        UserSpecError: an authentication type other than ``scram-sha-512``, ``password`` missing for
            it, or an ACL rule that cannot be mapped (nothing is changed then).
        KafkaException: a request failed (the next attempt repairs whatever was half done).
    """
    auth_type = (spec.get("authentication") or {}).get("type")
    if auth_type not in (None, "scram-sha-512"):
        raise UserSpecError(f"authentication type {auth_type!r}: the local brokers take only scram-sha-512")
    wanted = acl_bindings(user, spec)  # before any change: a bad rule changes nothing
    if auth_type == "scram-sha-512":
        if not password:
            raise UserSpecError("scram-sha-512 authentication needs a password")
        set_password(admin, user, password)
    else:
        remove_password(admin, user)
    return sync_acls(admin, user, wanted)


def delete_user(admin: AdminClient, user: str) -> None:
    """Remove ``User:<user>``'s ACLs and SCRAM credential (either may already be gone).

    Raises:
        KafkaException: a request failed.
    """
    sync_acls(admin, user, set())
    remove_password(admin, user)
