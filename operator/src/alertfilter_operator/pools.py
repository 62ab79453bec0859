"""Reconciling FilterPools: the pool-local Kafka, its node pool, the MirrorMaker 2 mirror (with its
metrics' ConfigMap: ``builders.mirror_metrics``) and the lean stream (its topic, its producer's KafkaUser and Deployment: ``builders.lean``).

Fetch, build (``builders.pool``), apply, and write status through one
:class:`~.status.StatusUpdate`, as for AlertFilters.
"""

from __future__ import annotations

import contextlib
from typing import Any

import kopf
from pydantic import ValidationError

from .builders import PoolInfo, build_mirror_maker2, build_mirror_user, build_pool_kafka, build_pool_node_pool
from .builders.lean import (
    LEAN_COMPONENT,
    build_lean_deployment,
    build_lean_topic,
    build_lean_user,
    lean_name,
    lean_topic_resource,
)
from .builders.mirror_metrics import build_mirror_metrics_configmap, mirror_metrics_name, with_metrics
from .conditions import FALSE, TRUE, Verdict, deployment_ready, runner_pod_problem, strimzi_ready
from .models import FilterPoolSpec, pool_kafka_name
from .naming import OWNER_UID, POOL_LABEL
from .ownership import NameConflict, apply_owned, delete_owned
from .placement import FilterKey, PlacementIndex, filters_in, pool_usage
from .pool_models import lean_topic_of
from .state import State
from .status import StatusUpdate

#: The conditions whose truth makes a FilterPool Ready, in the order that names the first problem.
READY_PARTS = ("KafkaReady", "MirrorReady", "LeanStreamReady")
READY_MESSAGE = "the pool's Kafka, mirror and lean stream are ready"
#: Retry delay while the pool's Kafka namespace is missing or filters still run in a deleted pool, s.
RETRY_S = 30
#: How many of the filters still in a pool a refused deletion names.
IN_USE_NAMED = 5


def refresh_pool_status(state: State, name: str, index: PlacementIndex, exclude: FilterKey | None = None) -> bool:
    """Recompute a pool's capacity, use and conditions from its children and the placement book.

    Args:
        exclude: a filter not to count (one being deleted, whose index entry may still be there).

    Returns:
        True when the pool's bootstrap address or lean topic changed (its filters' runners must be
        updated; the lean producer is re-applied here).
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
            book = {k: v for k, v in state.placement_book(index).items() if k != exclude}
        used = pool_usage(book, name)
        capacity = spec.capacity.nodes * spec.capacity.filtersPerNode
        st = StatusUpdate(kube, body)
        kafka = kube.get("Kafka", cluster, ns)
        st.set("KafkaReady", *strimzi_ready(kafka))
        st.set("MirrorReady", *strimzi_ready(kube.get("KafkaMirrorMaker2", f"{cluster}-mirror", ns)))
        st.set("LeanStreamReady", *_lean_ready(state, name, spec))
        st.set_ready(READY_PARTS, READY_MESSAGE)
        if body["metadata"].get("deletionTimestamp"):
            in_use = f"; {used} runner pod(s) of filters still run in it" if used else ""
            st.set("Ready", FALSE, "Deleting", f"the pool is being deleted and takes no new filter{in_use}")
        bootstrap = PoolInfo.from_spec(name, spec, (kafka or {}).get("status")).bootstrap
        st.fields.update(
            capacity=capacity,
            used=used,
            free=max(capacity - used, 0),
            bootstrapServers=bootstrap,
            kafkaCluster=cluster,
            leanTopic=lean_topic_of(spec),
        )
        st.write()
        old_bootstrap = st.old.get("bootstrapServers")
        moved = old_bootstrap is not None and old_bootstrap != bootstrap
        if moved and spec.lean.enabled and not body["metadata"].get("deletionTimestamp"):
            _apply_lean(state, name, body["metadata"]["uid"], spec, bootstrap)
        return moved or st.old.get("leanTopic") != lean_topic_of(spec)


def _lean_ready(state: State, name: str, spec: FilterPoolSpec) -> Verdict:
    """LeanStreamReady: the lean KafkaTopic ready and the producer's Deployment available (else why
    its pod is not running: a crash quotes the end of its log)."""
    if not spec.lean.enabled:
        return TRUE, "Disabled", "spec.lean.enabled is false: every filter reads the full stream"
    kube, ns = state.kube, spec.kafka.namespace
    topic = strimzi_ready(kube.get("KafkaTopic", lean_topic_resource(name, spec), ns))
    if topic[0] != TRUE:
        return topic[0], topic[1], f"the lean topic: {topic[2] or 'waiting for its KafkaTopic'}"
    status, reason, msg = deployment_ready(kube.get("Deployment", lean_name(name, spec), ns), False)
    msg = msg.replace("runner pods", "lean producer pods")
    if status != TRUE:
        pods = kube.list("Pod", ns, f"app.kubernetes.io/component={LEAN_COMPONENT},{POOL_LABEL}={name}")
        why = runner_pod_problem(pods)
        if why:
            reason, msg = why[0], f"{msg}; {why[1]}"
        return status, reason, msg
    return TRUE, "Ready", f"the lean topic {lean_topic_of(spec)} is ready and its producer runs"


def _remove_lean(state: State, name: str, uid: str, spec: FilterPoolSpec) -> None:
    """Delete the lean producer's Deployment, KafkaUser and the lean topic, those the pool owns
    (by name in its Kafka namespace: no cluster-wide list of Deployments is needed)."""
    kube = state.kube
    for kind, child in (
        ("Deployment", lean_name(name, spec)),
        ("KafkaUser", lean_name(name, spec)),
        ("KafkaTopic", lean_topic_resource(name, spec)),
    ):
        obj = kube.get(kind, child, spec.kafka.namespace)
        if obj is not None and (obj["metadata"].get("labels") or {}).get(OWNER_UID) == uid:
            kube.delete(kind, child, spec.kafka.namespace, uid=obj["metadata"].get("uid"))


def _apply_lean(state: State, name: str, uid: str, spec: FilterPoolSpec, bootstrap: str) -> None:
    """Apply the lean topic, the producer's KafkaUser and Deployment (or remove them when disabled)."""
    kube, cfg = state.kube, state.config
    if not spec.lean.enabled:
        _remove_lean(state, name, uid, spec)
        return
    kube.apply(build_lean_topic(name, uid, spec))
    if spec.kafka.authentication == "scram-sha-512":
        kube.apply(build_lean_user(name, uid, spec))
    deployment = build_lean_deployment(
        name, uid, spec, bootstrap, cfg.runner_image, cfg.schema_registry, cfg.runner_pull_policy, cfg.schema_dir
    )
    kube.apply(deployment)


def _apply_mirror(state: State, body: dict[str, Any], spec: FilterPoolSpec) -> None:
    """Apply the KafkaMirrorMaker2 with its metrics: the ConfigMap of JMX exporter rules first, then
    the mirror pointing at it. A ConfigMap of that name the pool does not own is left alone: the
    mirror then runs without metrics and a Warning Event says why."""
    kube = state.kube
    name, uid = body["metadata"]["name"], body["metadata"]["uid"]
    mirror = build_mirror_maker2(name, uid, spec)
    try:
        apply_owned(kube, build_mirror_metrics_configmap(name, uid, spec), uid)
    except NameConflict as exc:
        kube.post_event(body, "Warning", "MirrorMetricsConflict", f"the mirror exports no metrics: {exc}")
    else:
        mirror = with_metrics(mirror, name, spec)
    kube.apply(mirror)


def reconcile(state: State, body: dict[str, Any], logger: kopf.Logger, index: PlacementIndex) -> None:
    """Apply a pool's Kafka, KafkaNodePool, mirror user, KafkaMirrorMaker2 and lean stream; refresh its status.

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
            st = StatusUpdate(kube, body)
            st.set(
                "Ready", FALSE, "NamespaceNotFound", f"namespace {ns!r} of the pool's Kafka does not exist; create it"
            )
            st.write()
        raise kopf.TemporaryError(f"namespace {ns} does not exist", delay=RETRY_S)
    kube.apply(build_pool_kafka(name, uid, spec))
    kube.apply(build_pool_node_pool(name, uid, spec))
    if spec.kafka.authentication == "scram-sha-512":
        kube.apply(build_mirror_user(name, uid, spec))
    _apply_mirror(state, body, spec)
    kafka = kube.get("Kafka", pool_kafka_name(name, spec), ns)
    _apply_lean(state, name, uid, spec, PoolInfo.from_spec(name, spec, (kafka or {}).get("status")).bootstrap)
    refresh_pool_status(state, name, index)


def delete(state: State, body: dict[str, Any], logger: kopf.Logger, index: PlacementIndex) -> None:
    """Remove a pool's children; refuse (retry later) while filters still run in it.

    Raises:
        kopf.TemporaryError: filters are placed in the pool (deleting it would delete their topics' Kafka).
    """
    name, uid = body["metadata"]["name"], body["metadata"]["uid"]
    with state.placement_lock:
        filters = filters_in(state.placement_book(index), name)
    if filters:
        named = ", ".join(filters[:IN_USE_NAMED]) + ("..." if len(filters) > IN_USE_NAMED else "")
        msg = f"{len(filters)} AlertFilter(s) still run in this pool ({named}); delete them first"
        state.kube.post_event(body, "Warning", "PoolInUse", msg)
        refresh_pool_status(state, name, index)  # Ready=False, Deleting: no filter is placed here any more
        raise kopf.TemporaryError(msg, delay=RETRY_S)
    with contextlib.suppress(ValidationError):  # a spec that never parsed never had a lean stream nor metrics
        spec = FilterPoolSpec.model_validate(body.get("spec") or {})
        _remove_lean(state, name, uid, spec)
        delete_owned(state.kube, "ConfigMap", mirror_metrics_name(name, spec), spec.kafka.namespace, uid)
    for kind in ("KafkaMirrorMaker2", "KafkaUser", "KafkaTopic", "KafkaNodePool", "Kafka"):
        for obj in state.kube.list(kind, None, f"{OWNER_UID}={uid}"):
            state.kube.delete(kind, obj["metadata"]["name"], obj["metadata"]["namespace"])
    logger.info("deleted the pool's Kafka, node pool, mirror and lean stream")
