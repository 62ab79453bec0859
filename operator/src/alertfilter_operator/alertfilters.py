"""Reconciling AlertFilters: validate, place, build children, apply, write status.

Every function here fetches what it needs, calls the pure builders and condition logic, applies,
and writes status through one :class:`~.status.StatusUpdate`; kopf's handlers (``handlers.py``)
only call these.
"""

from __future__ import annotations

import base64
from typing import Any

import kopf
from pydantic import ValidationError

from alertfilter.api import FilterSourceError, check_source, source_sha256
from alertfilter.routing import route

from .admission import prefix_namespace
from .builders import (
    FilterRef,
    PoolInfo,
    build_candidates_topic,
    build_configmap,
    build_credentials_secret,
    build_dead_letter_topic,
    build_deployment,
    build_kafka_user,
    build_network_policy,
    build_output_topic,
)
from .conditions import FALSE, TRUE, UNKNOWN, deployment_ready, runner_pod_problem, strimzi_ready
from .contract import Claims, claims_of, output_topic_problem, pool_change_problem
from .filter_pools import image_refused, place, pool_info
from .images import runner_image_of
from .kube import owner_reference
from .models import AlertFilterSpec
from .naming import (
    FILTER_LABEL,
    OWNER_UID,
    TOPIC_KEY_LABEL,
    credentials_secret_name,
    is_dns_subdomain,
    output_topic,
    runner_name,
    topic_key,
    topic_resource_name,
)
from .ownership import NameConflict, apply_owned, delete_owned, owner_uid
from .placement import PlacementIndex, Unschedulable
from .pools import refresh_pool_status
from .replay import pending_request, replay_request
from .staging import has_candidates, topic_roles, topics_said
from .state import State
from .status import StatusUpdate

#: The conditions whose truth makes an AlertFilter Ready, in the order that names the first problem.
READY_PARTS = ("SourceValid", "TopicReady", "RunnerReady")
READY_MESSAGE = "the filter runs and its topics are ready"
#: Retry delay while a filter cannot be placed or its pool is missing, s.
RETRY_UNPLACED_S = 30
#: Retry delay while a name the filter needs is held by another object, s.
RETRY_CONFLICT_S = 60
#: Longest retry delay while Strimzi has not created the KafkaUser's password yet, s (15 s doubling).
RETRY_CREDENTIALS_MAX_S = 300
#: Most characters of a spec validation error written into the Ready condition.
INVALID_SPEC_MESSAGE_MAX = 1000


def refresh_status(state: State, namespace: str, name: str) -> None:
    """Recompute TopicReady, RunnerReady and Ready of a filter from its children; write when changed."""
    with state.lock("AlertFilter", namespace, name):
        body = state.kube.get("AlertFilter", name, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        st = StatusUpdate(state.kube, body)
        _child_conditions(state, body, st)
        st.set_ready(READY_PARTS, READY_MESSAGE)
        st.write()


def _child_conditions(state: State, body: dict[str, Any], st: StatusUpdate) -> None:
    """Set TopicReady and RunnerReady from the KafkaTopics, the Deployment and its pods."""
    kube, meta = state.kube, body["metadata"]
    pool_ns = (body.get("status") or {}).get("kafkaNamespace")
    if not pool_ns:
        return
    topics = [
        kube.get("KafkaTopic", topic_resource_name(meta["namespace"], meta["name"], role), pool_ns)
        for role in topic_roles(body)
    ]
    bad = [v for v in map(strimzi_ready, topics) if v[0] != TRUE]
    if not bad:
        st.set("TopicReady", TRUE, "Ready", f"the {topics_said(body)} KafkaTopics are ready")
    else:
        s, reason, msg = bad[0]
        st.set("TopicReady", s if s in (TRUE, FALSE) else UNKNOWN, reason, msg or "waiting for the KafkaTopics")
    if (st.get("SourceValid") or {}).get("status") == FALSE:
        st.set("RunnerReady", FALSE, "SourceInvalid", "no runner while spec.source is invalid")
        return
    suspended = bool((body.get("spec") or {}).get("suspend"))
    dep = kube.get("Deployment", runner_name(meta["name"]), meta["namespace"])
    s, reason, msg = deployment_ready(dep, suspended)
    if s != TRUE and dep is not None and not suspended:
        why = runner_pod_problem(kube.list("Pod", meta["namespace"], f"{FILTER_LABEL}={meta['name']}"))
        if why:
            reason, msg = why[0], f"{msg}; {why[1]}"
    st.set("RunnerReady", s, reason, msg)


def _static_claims(state: State, namespace: str, spec: dict[str, Any]) -> Claims:
    """The claims a filter's topics are checked against before it is placed: the pools' input topics
    and the namespace its custom topic's prefix names. Other filters' topics are checked where
    they live, on the pool's Kafka (:func:`_topic_held_elsewhere`), which costs one labelled list
    rather than a list of every AlertFilter at each reconcile."""
    kube = state.kube
    return claims_of([], kube.list("FilterPool"), prefix_namespace(kube, namespace, spec), exclude=None)


def _topic_held_elsewhere(state: State, ref: FilterRef, pool: PoolInfo) -> str | None:
    """Why the filter's topics are another's on the pool's Kafka: a KafkaTopic of another owner (or
    none) whose topic collides with one of them (found by its topic-key label, or named after the
    topic as Strimzi names the topics it discovers); None when they are free or the filter's own."""
    kube = state.kube
    for topic in (ref.output_topic, ref.dead_letter_topic):
        found = kube.list("KafkaTopic", pool.kafka_namespace, f"{TOPIC_KEY_LABEL}={topic_key(topic)}")
        by_name = kube.get("KafkaTopic", topic, pool.kafka_namespace) if is_dns_subdomain(topic) else None
        for obj in [*found, *([by_name] if by_name else [])]:
            if owner_uid(obj) != ref.uid:
                return f"topic {topic!r} on FilterPool {pool.name!r}'s Kafka is held by another KafkaTopic"
    return None


def _apply_children(state: State, body: dict[str, Any], ref: FilterRef, pool: PoolInfo) -> bool:
    """Apply every child of the filter, each only when the filter owns it or it does not exist;
    True while the runner's Kafka password does not exist yet.

    Raises:
        NameConflict: a child's name is held by another object (nothing of this filter's is taken over).
    """
    kube, cfg, uid = state.kube, state.config, ref.uid
    owner = owner_reference(body)

    def own(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["ownerReferences"] = [owner]
        return obj

    with state.claims_lock:  # two filters must not both see a topic free and both take it
        held = _topic_held_elsewhere(state, ref, pool)
        if held:
            raise NameConflict(held, "KafkaTopic")
        apply_owned(kube, build_output_topic(ref, pool), uid)
        apply_owned(kube, build_dead_letter_topic(ref, pool), uid)
        if ref.candidates:
            apply_owned(kube, build_candidates_topic(ref, pool), uid)
    apply_owned(kube, own(build_configmap(ref)), uid)
    waiting_for_credentials = False
    if pool.authentication == "scram-sha-512":
        apply_owned(kube, build_kafka_user(ref, pool), uid)
        secret = kube.get("Secret", ref.kafka_user, pool.kafka_namespace)
        password = ((secret or {}).get("data") or {}).get("password")
        if password:
            apply_owned(kube, own(build_credentials_secret(ref, base64.b64decode(password).decode())), uid)
        else:
            waiting_for_credentials = True
    apply_owned(kube, own(build_network_policy(ref, pool, cfg.schema_registry_port)), uid)
    image = runner_image_of(ref.spec.image, cfg.runner_image)
    deployment = build_deployment(ref, pool, image, cfg.schema_registry, cfg.runner_pull_policy, cfg.schema_dir)
    apply_owned(kube, own(deployment), uid)
    return waiting_for_credentials


def _replay(state: State, body: dict[str, Any], st: StatusUpdate) -> tuple[int, str] | None:
    """The replay the runners must carry out for ``spec.replayFrom`` (``replay.py``). A new request
    is recorded in ``status.replay`` at once, before any runner is told, so that its id outlives an
    operator restart and no request is ever carried out under two ids."""
    replay_from = (body.get("spec") or {}).get("replayFrom")
    record, new = replay_request(
        replay_from, (body.get("status") or {}).get("replay"), body["metadata"].get("generation")
    )
    if new and record is not None:
        meta = body["metadata"]
        state.kube.patch_status("AlertFilter", meta["name"], meta["namespace"], {"replay": record})
        what = f"replay from {record['from']} requested (request {record['requestId']})"
        state.kube.post_event(body, "Normal", "ReplayRequested", f"{what}: the runners restart and rewind to it")
    if record is not None:
        st.fields["replay"] = record
    return pending_request(record, replay_from)


def _refuse(st: StatusUpdate, reason: str, message: str, topic: bool) -> None:
    """Say in RunnerReady (and TopicReady when ``topic``: a topic is the cause) and Ready why
    nothing of the filter runs, and write."""
    if topic:
        st.set("TopicReady", FALSE, reason, message)
    st.set("RunnerReady", FALSE, reason, f"no runner: {message}")
    st.set("Ready", FALSE, reason, message)
    st.write()


def reconcile(state: State, body: dict[str, Any], logger: kopf.Logger, index: PlacementIndex, retry: int = 0) -> None:
    """Bring one AlertFilter's children and status in line with its spec (idempotent).

    Args:
        body: the AlertFilter (re-read from the API under the object's lock; this one is the fallback).
        index: the placement index (see ``handlers.placements``).
        retry: kopf's retry count of this change, for the credentials back-off.

    Raises:
        kopf.PermanentError: the spec cannot be parsed (the API server's schema should prevent it).
        kopf.TemporaryError: the filter cannot be placed yet, its pool is missing, or credentials are pending.
    """
    kube = state.kube
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    with state.lock("AlertFilter", ns, name):
        body = kube.get("AlertFilter", name, ns) or body
        st = StatusUpdate(kube, body)
        spec_raw = body.get("spec") or {}
        try:
            spec = AlertFilterSpec.model_validate(spec_raw)
        except ValidationError as exc:
            st.set("Ready", FALSE, "InvalidSpec", str(exc)[:INVALID_SPEC_MESSAGE_MAX])
            st.write()
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        digest = source_sha256(spec.source)
        st.fields["sourceHash"] = digest
        try:
            found = check_source(spec.source, spec.entrypoint)
        except FilterSourceError as exc:
            st.fields["sourceError"] = exc.as_dict()
            st.set("SourceValid", FALSE, "SourceError", f"line {exc.line}, column {exc.column}: {exc.message}")
            st.set("RunnerReady", FALSE, "SourceInvalid", "no runner while spec.source is invalid")
            if delete_owned(kube, "Deployment", runner_name(name), ns, uid):
                logger.info("deleted the runner: spec.source is invalid")
            st.set_ready(READY_PARTS, READY_MESSAGE)
            st.write()
            return
        st.fields["sourceError"] = None
        what = f"entrypoint {found.name}" + (f" ({found.style})" if found.style else "")
        if not found.name:  # only loading the module can tell which definition it is: the runner says
            what = "compiles; the runner chooses the entrypoint when it loads the module"
        st.set("SourceValid", TRUE, "Valid", what)

        placed = (body.get("status") or {}).get("pool")
        # claimed: it was placed with this very topic (the topic cannot change), so rules that a
        # namespace or filter created since would trigger do not strand it
        names = (body.get("status") or {}).get("names") or {}
        claimed = bool(placed) and names.get("outputTopic") == output_topic(ns, name, spec.output.topic)
        for reason, problem in (
            (
                "TopicConflict",
                output_topic_problem(ns, name, spec_raw, _static_claims(state, ns, spec_raw), claimed),
            ),
            ("PoolChangeRefused", pool_change_problem(placed, spec.pool, placed)),
        ):
            if problem:
                _refuse(st, reason, problem, topic=reason == "TopicConflict")
                raise kopf.TemporaryError(problem, delay=RETRY_CONFLICT_S)
        try:
            pool_name = place(state, index, (ns, name), spec, placed)
        except Unschedulable as exc:
            st.set("Ready", FALSE, "Unschedulable", str(exc))
            st.write()
            raise kopf.TemporaryError(f"unschedulable: {exc}", delay=RETRY_UNPLACED_S) from None
        refused = image_refused(state, spec.image, pool_name)
        if refused:  # the webhook refuses it at apply; here: admitted without it, or the pool's list changed since
            if delete_owned(kube, "Deployment", runner_name(name), ns, uid):
                logger.info("deleted the runner: its image is not allowed in FilterPool %s", pool_name)
            _refuse(st, "ImageNotAllowed", refused, topic=False)
            raise kopf.TemporaryError(refused, delay=RETRY_CONFLICT_S)
        try:
            pool = pool_info(state, pool_name)
        except LookupError:
            st.set("Ready", FALSE, "PoolNotFound", f"FilterPool {pool_name!r} does not exist")
            st.write()
            raise kopf.TemporaryError(f"FilterPool {pool_name} not found", delay=RETRY_UNPLACED_S) from None
        # the lean stream when the fields it reads hold no cutout and the pool has one (alertfilter.routing)
        routed = route(spec.source, found.name, spec.visitField, spec.idField, forced_full=spec.stream == "full")
        lean = routed.lean and pool.lean_topic is not None
        staged = has_candidates(kube, ns, name, uid, spec, pool.kafka_namespace)
        ref = FilterRef(ns, name, uid, spec, digest, lean=lean, candidates=staged, replay=_replay(state, body, st))
        try:
            waiting_for_credentials = _apply_children(state, body, ref, pool)
        except NameConflict as exc:
            _refuse(st, "NameConflict", str(exc), topic=exc.kind == "KafkaTopic")
            raise kopf.TemporaryError(str(exc), delay=RETRY_CONFLICT_S) from None
        st.fields.update(
            names=ref.owned_names(),
            pool=pool_name,
            inputTopic=ref.input_topic(pool),
            inputStream=("lean: " if lean else "full: ")
            + (routed.why if lean or not routed.lean else f"FilterPool {pool_name!r} has no lean stream"),
            outputTopic=ref.output_topic,
            deadLetterTopic=ref.dead_letter_topic,
            bootstrapServers=pool.bootstrap,
            kafkaNamespace=pool.kafka_namespace,
            image=runner_image_of(spec.image, state.config.runner_image),
        )
        _child_conditions(state, {**body, "status": {**(body.get("status") or {}), **st.fields}}, st)
        if waiting_for_credentials:
            st.set(
                "RunnerReady",
                FALSE,
                "WaitingForCredentials",
                f"waiting for Strimzi to create the KafkaUser secret {pool.kafka_namespace}/{ref.kafka_user}",
            )
        st.set_ready(READY_PARTS, READY_MESSAGE)
        st.write()
    refresh_pool_status(state, pool_name, index)
    if waiting_for_credentials:
        delay = min(15 * 2**retry, RETRY_CREDENTIALS_MAX_S)
        raise kopf.TemporaryError("waiting for the KafkaUser's credentials", delay=delay)


def resync(state: State, namespace: str, name: str, logger: kopf.Logger, index: PlacementIndex) -> None:
    """Re-apply a filter's children and recompute its status: repairs drift (a child deleted or
    edited by hand). A filter that cannot be reconciled now is logged, not raised: the resync
    comes again, and kopf's change handlers own the retries."""
    body = state.kube.get("AlertFilter", name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    try:
        reconcile(state, body, logger, index)
    except (kopf.TemporaryError, kopf.PermanentError) as exc:
        logger.info("resync: %s", exc)


def follow_pool(state: State, pool: str, logger: kopf.Logger, index: PlacementIndex) -> None:
    """Re-reconcile every filter placed in ``pool`` (its Kafka's bootstrap address changed, and
    their runners must follow)."""
    with state.placement_lock:
        keys = [k for k, (p, _) in state.placement_book(index).items() if p == pool]
    for ns, fname in keys:
        af = state.kube.get("AlertFilter", fname, ns)
        if af is None:
            continue
        try:
            reconcile(state, af, logger, index)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            logger.info("re-reconcile of %s/%s: %s", ns, fname, exc)
        except Exception:  # one filter's fault must not keep the pool's other filters on the old pool
            logger.exception("re-reconcile of %s/%s failed; the pool's other filters go on", ns, fname)


def delete(state: State, body: dict[str, Any], logger: kopf.Logger, index: PlacementIndex) -> None:
    """Remove every child of a filter, including those in the Kafka namespace (idempotent), and
    refresh its pool's use."""
    kube = state.kube
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    removed = []
    for kind in ("KafkaTopic", "KafkaUser"):
        for obj in kube.list(kind, None, f"{OWNER_UID}={uid}"):
            child = obj["metadata"]
            if kube.delete(kind, child["name"], child["namespace"], uid=child.get("uid")):
                removed.append(f"{kind} {child['namespace']}/{child['name']}")
    runner = runner_name(name)
    for kind, child_name in (
        ("Deployment", runner),
        ("NetworkPolicy", runner),
        ("ConfigMap", runner),
        ("Secret", credentials_secret_name(name)),
    ):
        if delete_owned(kube, kind, child_name, ns, uid):
            removed.append(f"{kind} {ns}/{child_name}")
    with state.placement_lock:
        placed = state.pending.pop((ns, name), None) or state.placement_book(index).get((ns, name))
    pool = placed[0] if placed else (body.get("status") or {}).get("pool")
    if removed:
        logger.info("deleted %s", ", ".join(removed))
    if pool:
        refresh_pool_status(state, pool, index, exclude=(ns, name))
