"""Reconciling FilterPools: the pool-local Kafka, its node pool and the MirrorMaker 2 mirror.

Fetch, build (``builders.pool``), apply, and write status through one
:class:`~.status.StatusUpdate`, as for AlertFilters.
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from .builders import PoolInfo, build_mirror_maker2, build_mirror_user, build_pool_kafka, build_pool_node_pool
from .conditions import FALSE, strimzi_ready
from .models import FilterPoolSpec, pool_kafka_name
from .naming import OWNER_UID
from .placement import FilterKey, PlacementIndex, filters_in, pool_usage
from .state import State
from .status import StatusUpdate

#: The conditions whose truth makes a FilterPool Ready, in the order that names the first problem.
READY_PARTS = ("KafkaReady", "MirrorReady")
READY_MESSAGE = "the pool's Kafka and mirror are ready"
#: Retry delay while the pool's Kafka namespace is missing or filters still run in a deleted pool, s.
RETRY_S = 30
#: How many of the filters still in a pool a refused deletion names.
IN_USE_NAMED = 5


def refresh_pool_status(state: State, name: str, index: PlacementIndex, exclude: FilterKey | None = None) -> bool:
    """Recompute a pool's capacity, use and conditions from its children and the placement book.

    Args:
        exclude: a filter not to count (one being deleted, whose index entry may still be there).

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
            book = {k: v for k, v in state.placement_book(index).items() if k != exclude}
        used = pool_usage(book, name)
        capacity = spec.capacity.nodes * spec.capacity.filtersPerNode
        st = StatusUpdate(kube, body)
        kafka = kube.get("Kafka", cluster, ns)
        st.set("KafkaReady", *strimzi_ready(kafka))
        st.set("MirrorReady", *strimzi_ready(kube.get("KafkaMirrorMaker2", f"{cluster}-mirror", ns)))
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
        )
        st.write()
        old_bootstrap = st.old.get("bootstrapServers")
        return old_bootstrap is not None and old_bootstrap != bootstrap


def reconcile(state: State, body: dict[str, Any], logger: kopf.Logger, index: PlacementIndex) -> None:
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
    kube.apply(build_mirror_maker2(name, uid, spec))
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
    for kind in ("KafkaMirrorMaker2", "KafkaUser", "KafkaNodePool", "Kafka"):
        for obj in state.kube.list(kind, None, f"{OWNER_UID}={uid}"):
            state.kube.delete(kind, obj["metadata"]["name"], obj["metadata"]["namespace"])
    logger.info("deleted the pool's Kafka, node pool and mirror")
