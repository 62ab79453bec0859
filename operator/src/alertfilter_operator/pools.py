"""Reconciling FilterPools: the pool-local Kafka, its node pool and the MirrorMaker 2 mirror."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from .builders import PoolInfo, build_mirror_maker2, build_mirror_user, build_pool_kafka, build_pool_node_pool
from .conditions import FALSE, TRUE, UNKNOWN, set_condition, strimzi_ready
from .models import FilterPoolSpec, pool_kafka_name
from .naming import OWNER_UID
from .state import State, status_unchanged

log = logging.getLogger("alertfilter_operator.pools")


def _write(state: State, body: dict[str, Any], conditions: list[dict[str, Any]], fields: dict[str, Any]) -> None:
    old = body.get("status") or {}
    new = {**fields, "conditions": conditions, "observedGeneration": body["metadata"].get("generation")}
    if status_unchanged(old, new):
        return
    state.kube.patch_status("FilterPool", body["metadata"]["name"], None, new)


def _set(
    state: State,
    body: dict[str, Any],
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
) -> list[dict[str, Any]]:
    conditions, changed = set_condition(conditions, type_, status, reason, message, body["metadata"].get("generation"))
    if changed:
        state.kube.post_event(body, "Normal" if status == TRUE else "Warning", reason, f"{type_}={status}: {message}")
    return conditions


def refresh_pool_status(state: State, name: str) -> bool:
    """Recompute a pool's capacity, use and conditions from its children and the placement book.

    Returns:
        True when the pool's bootstrap address changed (its filters' runners must be updated).
    """
    kube = state.kube
    with state.lock("FilterPool", None, name):
        body = kube.get("FilterPool", name)
        if body is None:
            return False
        try:
            spec = FilterPoolSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return False
        cluster = pool_kafka_name(name, spec)
        ns = spec.kafka.namespace
        with state.placement_lock:
            state.load_placements()
            used = state.pool_usage(name)
        capacity = spec.capacity.nodes * spec.capacity.filtersPerNode
        conditions = [dict(c) for c in (body.get("status") or {}).get("conditions") or []]
        kafka = kube.get("Kafka", cluster, ns)
        k = strimzi_ready(kafka)
        conditions = _set(state, body, conditions, "KafkaReady", *k)
        m = strimzi_ready(kube.get("KafkaMirrorMaker2", f"{cluster}-mirror", ns))
        conditions = _set(state, body, conditions, "MirrorReady", *m)
        if k[0] == TRUE and m[0] == TRUE:
            conditions = _set(state, body, conditions, "Ready", TRUE, "Ready", "the pool's Kafka and mirror are ready")
        else:
            bad = ("KafkaReady", k) if k[0] != TRUE else ("MirrorReady", m)
            conditions = _set(
                state,
                body,
                conditions,
                "Ready",
                FALSE if bad[1][0] == FALSE else UNKNOWN,
                bad[1][1],
                f"{bad[0]} is {bad[1][0]}: {bad[1][2]}",
            )
        bootstrap = PoolInfo.from_spec(name, spec, (kafka or {}).get("status")).bootstrap
        old_bootstrap = (body.get("status") or {}).get("bootstrapServers")
        _write(
            state,
            body,
            conditions,
            {
                "capacity": capacity,
                "used": used,
                "free": max(capacity - used, 0),
                "bootstrapServers": bootstrap,
                "kafkaCluster": cluster,
            },
        )
        return old_bootstrap is not None and old_bootstrap != bootstrap


def reconcile(state: State, body: dict[str, Any], logger: kopf.Logger) -> None:
    """Apply a pool's Kafka, KafkaNodePool, mirror user and KafkaMirrorMaker2; refresh its status.

    Raises:
        kopf.PermanentError: unparseable spec. kopf.TemporaryError: the Kafka namespace does not exist.
    """
    kube = state.kube
    meta = body["metadata"]
    name, uid = meta["name"], meta["uid"]
    try:
        spec = FilterPoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        raise kopf.PermanentError(f"invalid spec: {exc}") from None
    ns = spec.kafka.namespace
    if kube.get("Namespace", ns) is None:
        with state.lock("FilterPool", None, name):
            conditions = _set(
                state,
                body,
                [dict(c) for c in (body.get("status") or {}).get("conditions") or []],
                "Ready",
                FALSE,
                "NamespaceNotFound",
                f"namespace {ns!r} of the pool's Kafka does not exist; create it",
            )
            _write(state, body, conditions, {})
        raise kopf.TemporaryError(f"namespace {ns} does not exist", delay=30)
    kube.apply(build_pool_kafka(name, uid, spec))
    kube.apply(build_pool_node_pool(name, uid, spec))
    if spec.kafka.authentication == "scram-sha-512":
        kube.apply(build_mirror_user(name, uid, spec))
    kube.apply(build_mirror_maker2(name, uid, spec))
    refresh_pool_status(state, name)


def delete(state: State, body: dict[str, Any], logger: kopf.Logger) -> None:
    """Remove a pool's children; refuse (retry later) while filters still run in it.

    Raises:
        kopf.TemporaryError: filters are placed in the pool (deleting it would delete their topics' Kafka).
    """
    name, uid = body["metadata"]["name"], body["metadata"]["uid"]
    with state.placement_lock:
        state.load_placements()
        filters = state.filters_in(name)
    if filters:
        msg = (
            f"{len(filters)} AlertFilter(s) still run in this pool ({', '.join(filters[:5])}"
            f"{'...' if len(filters) > 5 else ''}); delete them first"
        )
        state.kube.post_event(body, "Warning", "PoolInUse", msg)
        raise kopf.TemporaryError(msg, delay=30)
    for kind in ("KafkaMirrorMaker2", "KafkaUser", "KafkaNodePool", "Kafka"):
        for obj in state.kube.list(kind, None, f"{OWNER_UID}={uid}"):
            state.kube.delete(kind, obj["metadata"]["name"], obj["metadata"]["namespace"])
    logger.info("deleted the pool's Kafka, node pool and mirror")
