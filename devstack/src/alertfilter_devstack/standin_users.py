"""The Strimzi stand-in's user operator: ``KafkaUser`` → SCRAM-SHA-512 credential, exact ACLs, Secret.

What Strimzi's User Operator does, for the local brokers (kopf handlers, registered on import by
``strimzi_standin``):

- create, spec change, stand-in start: the user's credential and exactly its ACLs on the broker its
  ``strimzi.io/cluster`` label names (``useroperator.sync_user``: rules no longer listed go); for
  ``scram-sha-512`` authentication the Secret ``<user>`` in the KafkaUser's namespace with
  ``password`` and ``sasl.jaas.config``, labelled ``strimzi.io/cluster`` and
  ``strimzi.io/kind=KafkaUser`` and owned by the KafkaUser. The password is the one in
  ``spec.authentication.password.valueFrom.secretKeyRef`` when given, else the Secret's existing one,
  else a new random one. Status: Ready with ``username`` and ``secret``; a spec the stand-in cannot
  apply (TLS, an unknown ACL operation) gets Ready=False with the reason and changes nothing.
- delete: its ACLs and credential leave the broker, and its Secret is deleted (the ownerReference
  would also let Kubernetes' garbage collector remove it).
"""

from __future__ import annotations

import base64
from typing import Any

import kopf
import kubernetes
from confluent_kafka import KafkaException

from .kafkaauth import ScramUser
from .standin_kafka import GROUP, VERSION, admin_for, not_ready, ready
from .useroperator import UserSpecError, delete_user, generate_password, sync_user

#: Seconds before a handler that met an unreachable broker or API server runs again.
RETRY_S = 5


def _cluster(meta: kopf.Meta) -> str | None:
    return (meta.get("labels") or {}).get("strimzi.io/cluster")


def _read_secret(namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret's decoded ``data`` (str values), or None when it does not exist."""
    try:
        secret = kubernetes.client.CoreV1Api().read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _password(name: str, namespace: str, spec: kopf.Spec) -> str:
    """The password to give the user (see the module's docstring for the order).

    Raises:
        UserSpecError: ``spec.authentication.password`` names a Secret or key that does not exist.
    """
    ref = (((spec.get("authentication") or {}).get("password") or {}).get("valueFrom") or {}).get("secretKeyRef")
    if ref:
        given = _read_secret(namespace, ref.get("name", ""))
        if not given or ref.get("key") not in given:
            raise UserSpecError(f"the password Secret {ref.get('name')!r} or its key {ref.get('key')!r} does not exist")
        return str(given[ref["key"]])
    existing = _read_secret(namespace, name) or {}
    return str(existing.get("password") or generate_password())


def secret_manifest(user: dict[str, Any], password: str) -> dict[str, Any]:
    """The Secret Strimzi's User Operator makes for a SCRAM-SHA-512 ``KafkaUser``.

    Args:
        user: the KafkaUser (``apiVersion``, ``metadata.name``, ``namespace``, ``uid``, labels).
        password: its clear-text password.
    """
    meta = user["metadata"]
    data = {"password": password, "sasl.jaas.config": ScramUser(meta["name"], password).jaas()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {
                "strimzi.io/cluster": (meta.get("labels") or {}).get("strimzi.io/cluster", ""),
                "strimzi.io/kind": "KafkaUser",
                "app.kubernetes.io/managed-by": "devstack-strimzi-standin",
            },
            "ownerReferences": [
                {
                    "apiVersion": user["apiVersion"],
                    "kind": "KafkaUser",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _apply_secret(manifest: Any) -> None:
    """Create the Secret, or replace the one there (``manifest``: a dict, which the client accepts
    though it is typed ``V1Secret``)."""
    core = kubernetes.client.CoreV1Api()
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        core.create_namespaced_secret(ns, manifest)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(name, ns, manifest)


@kopf.on.create(GROUP, VERSION, "kafkausers")
@kopf.on.update(GROUP, VERSION, "kafkausers", field="spec")
@kopf.on.resume(GROUP, VERSION, "kafkausers")
def user_apply(
    body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, name: str, namespace: str | None, patch: kopf.Patch,
    logger: kopf.Logger, **_: Any,
) -> None:  # fmt: skip
    """Apply the KafkaUser's credential, ACLs and Secret; set its status."""
    assert namespace is not None  # KafkaUser is a namespaced resource
    scram = (spec.get("authentication") or {}).get("type") == "scram-sha-512"
    try:
        password = _password(name, namespace, spec) if scram else None
        created, deleted = sync_user(admin_for(_cluster(meta)), name, dict(spec), password)
        if scram and password:
            _apply_secret(secret_manifest(dict(body), password))
    except UserSpecError as exc:
        logger.warning("KafkaUser %s/%s not applied: %s", namespace, name, exc)
        patch.status.update(not_ready(meta.get("generation"), "InvalidResourceException", str(exc)))
        return
    except (KafkaException, kubernetes.client.ApiException) as exc:
        raise kopf.TemporaryError(f"applying KafkaUser {name}: {exc}", delay=RETRY_S) from exc
    logger.info("KafkaUser %s: credential %s, ACLs +%d -%d", name, "set" if scram else "none", created, deleted)
    patch.status.update(ready(meta.get("generation"), username=name, **({"secret": name} if scram else {})))


@kopf.on.delete(GROUP, VERSION, "kafkausers")
def user_delete(meta: kopf.Meta, name: str, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
    """Remove the user's ACLs, credential and Secret."""
    assert namespace is not None  # KafkaUser is a namespaced resource
    try:
        delete_user(admin_for(_cluster(meta)), name)
        kubernetes.client.CoreV1Api().delete_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"deleting the Secret of KafkaUser {name}: {exc}", delay=RETRY_S) from exc
    except KafkaException as exc:
        raise kopf.TemporaryError(f"deleting KafkaUser {name}: {exc}", delay=RETRY_S) from exc
    logger.info("KafkaUser %s: credential, ACLs and Secret removed", name)
