"""Reconciling AlertFilters: validate, place, build children, apply, write status."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from alertfilter.api import FilterSourceError, check_source, source_sha256

from .builders import (
    FilterRef,
    PoolInfo,
    build_configmap,
    build_credentials_secret,
    build_dead_letter_topic,
    build_deployment,
    build_kafka_user,
    build_network_policy,
    build_output_topic,
)
from .conditions import FALSE, TRUE, UNKNOWN, deployment_ready, set_condition, strimzi_ready
from .kube import owner_reference
from .models import AlertFilterSpec, FilterPoolSpec, pool_kafka_name
from .naming import OWNER_UID, kafka_child_name, runner_name
from .placement import Unschedulable, choose_pool, filter_weight
from .pools import refresh_pool_status
from .state import State, status_unchanged

log = logging.getLogger("alertfilter_operator.alertfilters")


class _Status:
    """Accumulates a filter's new status and the events its transitions call for."""

    def __init__(self, body: dict[str, Any], kube: Any = None) -> None:
        self.body = body
        self.kube = kube
        self.old = dict(body.get("status") or {})
        self.conditions: list[dict[str, Any]] = [dict(c) for c in self.old.get("conditions") or []]
        self.fields: dict[str, Any] = {}
        self.generation = body["metadata"].get("generation")

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        self.conditions, changed = set_condition(self.conditions, type_, status, reason, message, self.generation)
        if changed and self.kube is not None:
            self.kube.post_event(
                self.body, "Normal" if status == TRUE else "Warning", reason, f"{type_}={status}: {message}"
            )

    def ready_from_parts(self) -> None:
        parts = {c["type"]: c for c in self.conditions if c["type"] in ("SourceValid", "TopicReady", "RunnerReady")}
        for t in ("SourceValid", "TopicReady", "RunnerReady"):
            c = parts.get(t)
            if c is None or c["status"] != TRUE:
                reason = (c or {}).get("reason", "Pending")
                msg = f"{t} is {(c or {}).get('status', UNKNOWN)}: {(c or {}).get('message', '')}"
                self.set("Ready", FALSE if c and c["status"] == FALSE else UNKNOWN, reason, msg)
                return
        self.set("Ready", TRUE, "Ready", "the filter runs and its topics are ready")

    def write(self, state: State) -> None:
        meta = self.body["metadata"]
        new = {**self.fields, "conditions": self.conditions, "observedGeneration": self.generation}
        if status_unchanged(self.old, new):
            return
        state.kube.patch_status("AlertFilter", meta["name"], meta["namespace"], new)


def _place(state: State, key: tuple[str, str], spec: AlertFilterSpec, current: str | None) -> str:
    weight = filter_weight(spec.replicas)
    with state.placement_lock:
        state.load_placements()
        placed = state.placements.get(key)
        if placed is not None and (spec.pool in (None, placed[0])):
            state.placements[key] = (placed[0], weight)
            return placed[0]
        if current and spec.pool in (None, current):
            state.placements[key] = (current, weight)
            return current
        pool = choose_pool(state.pool_loads(exclude=key), weight, spec.pool)
        state.placements[key] = (pool, weight)
        return pool


def refresh_status(state: State, namespace: str, name: str) -> None:
    """Recompute TopicReady, RunnerReady and Ready of a filter from its children; write when changed."""
    kube = state.kube
    with state.lock("AlertFilter", namespace, name):
        body = kube.get("AlertFilter", name, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        st = _Status(body, kube)
        _child_conditions(state, body, st)
        st.ready_from_parts()
        st.write(state)


def _child_conditions(state: State, body: dict[str, Any], st: _Status) -> None:
    kube, meta = state.kube, body["metadata"]
    status = body.get("status") or {}
    pool_ns = status.get("kafkaNamespace")
    if not pool_ns:
        return
    topics = [
        kube.get("KafkaTopic", kafka_child_name(meta["namespace"], meta["name"], s), pool_ns) for s in ("", "dlq")
    ]
    states = [strimzi_ready(t) for t in topics]
    bad = [s for s in states if s[0] != TRUE]
    if not bad:
        st.set("TopicReady", TRUE, "Ready", "the output and dead-letter KafkaTopics are ready")
    else:
        s, reason, msg = bad[0]
        st.set("TopicReady", s if s in (TRUE, FALSE) else UNKNOWN, reason, msg or "waiting for the KafkaTopics")
    suspended = bool((body.get("spec") or {}).get("suspend"))
    if st.conditions and any(c["type"] == "SourceValid" and c["status"] == FALSE for c in st.conditions):
        st.set("RunnerReady", FALSE, "SourceInvalid", "no runner while spec.source is invalid")
        return
    dep = kube.get("Deployment", runner_name(meta["name"]), meta["namespace"])
    s, reason, msg = deployment_ready(dep, suspended)
    if s != TRUE and dep is not None and not suspended:
        why = runner_pod_problem(kube.list("Pod", meta["namespace"], f"alerts.lsst.io/filter={meta['name']}"))
        if why:
            reason, msg = why[0], f"{msg}; {why[1]}"
    st.set("RunnerReady", s, reason, msg)


def runner_pod_problem(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first runner container that is waiting or crashed, from the Pods' status:
    e.g. ("CrashLoopBackOff", "exit code 2: .../filter.py:1:1: the source raised ModuleNotFoundError ...")."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting")
            last = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
            if waiting or (last and last.get("exitCode")):
                reason = (waiting or {}).get("reason") or (last or {}).get("reason") or "ContainerFailed"
                detail = ""
                if last:
                    detail = f"exit code {last.get('exitCode')}: {(last.get('message') or '').strip()}"
                elif waiting and waiting.get("message"):
                    detail = waiting["message"]
                return reason, f"pod {pod['metadata']['name']}: {reason}" + (f", {detail}" if detail else "")
    return None


def reconcile(state: State, body: dict[str, Any], logger: kopf.Logger, retry: int = 0) -> None:
    """Bring one AlertFilter's children and status in line with its spec (idempotent).

    Raises:
        kopf.PermanentError: the spec cannot be parsed (the API server's schema should prevent it).
        kopf.TemporaryError: the filter cannot be placed yet, its pool is missing, or credentials are pending.
    """
    kube, cfg = state.kube, state.config
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    with state.lock("AlertFilter", ns, name):
        body = kube.get("AlertFilter", name, ns) or body
        st = _Status(body, kube)
        try:
            spec = AlertFilterSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            st.set("Ready", FALSE, "InvalidSpec", str(exc)[:1000])
            st.write(state)
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        digest = source_sha256(spec.source)
        st.fields["sourceHash"] = digest
        try:
            found = check_source(spec.source, spec.entrypoint)
        except FilterSourceError as exc:
            st.fields["sourceError"] = exc.as_dict()
            st.set("SourceValid", FALSE, "SourceError", f"line {exc.line}, column {exc.column}: {exc.message}")
            st.set("RunnerReady", FALSE, "SourceInvalid", "no runner while spec.source is invalid")
            if kube.delete("Deployment", runner_name(name), ns):
                logger.info("deleted the runner: spec.source is invalid")
            st.ready_from_parts()
            st.write(state)
            return
        st.fields["sourceError"] = None
        st.set("SourceValid", TRUE, "Valid", f"entrypoint {found.name} ({found.style})")

        try:
            pool_name = _place(state, (ns, name), spec, (body.get("status") or {}).get("pool"))
        except Unschedulable as exc:
            st.set("Ready", FALSE, "Unschedulable", str(exc))
            st.write(state)
            raise kopf.TemporaryError(f"unschedulable: {exc}", delay=30) from None
        pool_body = kube.get("FilterPool", pool_name)
        if pool_body is None:
            st.set("Ready", FALSE, "PoolNotFound", f"FilterPool {pool_name!r} does not exist")
            st.write(state)
            raise kopf.TemporaryError(f"FilterPool {pool_name} not found", delay=30)
        pool_spec = FilterPoolSpec.model_validate(pool_body.get("spec") or {})
        kafka = kube.get("Kafka", pool_kafka_name(pool_name, pool_spec), pool_spec.kafka.namespace)
        pool = PoolInfo.from_spec(pool_name, pool_spec, (kafka or {}).get("status"))
        ref = FilterRef(ns, name, uid, spec, digest)
        owner = owner_reference(body)

        def own(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["ownerReferences"] = [owner]
            return obj

        kube.apply(own(build_configmap(ref)))
        kube.apply(build_output_topic(ref, pool))
        kube.apply(build_dead_letter_topic(ref, pool))
        waiting_for_credentials = False
        if pool.authentication == "scram-sha-512":
            kube.apply(build_kafka_user(ref, pool))
            secret = kube.get("Secret", ref.kafka_user, pool.kafka_namespace)
            password = ((secret or {}).get("data") or {}).get("password")
            if password:
                import base64

                kube.apply(own(build_credentials_secret(ref, base64.b64decode(password).decode())))
            else:
                waiting_for_credentials = True
        kube.apply(own(build_network_policy(ref, pool, cfg.schema_registry_port)))
        kube.apply(
            own(
                build_deployment(
                    ref, pool, cfg.runner_image, cfg.schema_registry, cfg.runner_pull_policy, cfg.schema_dir
                )
            )
        )
        st.fields.update(
            pool=pool_name,
            inputTopic=pool.input_topic,
            outputTopic=ref.output_topic,
            deadLetterTopic=ref.dead_letter_topic,
            bootstrapServers=pool.bootstrap,
            kafkaNamespace=pool.kafka_namespace,
        )
        body = {**body, "status": {**(body.get("status") or {}), **st.fields}}
        st.body = body
        _child_conditions(state, body, st)
        if waiting_for_credentials:
            st.set(
                "RunnerReady",
                FALSE,
                "WaitingForCredentials",
                f"waiting for Strimzi to create the KafkaUser secret {pool.kafka_namespace}/{ref.kafka_user}",
            )
        st.ready_from_parts()
        st.write(state)
    refresh_pool_status(state, pool_name)
    if waiting_for_credentials:
        raise kopf.TemporaryError("waiting for the KafkaUser's credentials", delay=min(15 * 2**retry, 300))


def delete(state: State, body: dict[str, Any], logger: kopf.Logger) -> None:
    """Remove every child of a filter, including those in the Kafka namespace (idempotent)."""
    kube = state.kube
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    removed = []
    for kind in ("KafkaTopic", "KafkaUser"):
        for obj in kube.list(kind, None, f"{OWNER_UID}={uid}"):
            if kube.delete(kind, obj["metadata"]["name"], obj["metadata"]["namespace"]):
                removed.append(f"{kind} {obj['metadata']['namespace']}/{obj['metadata']['name']}")
    runner = runner_name(name)
    for kind, child in (
        ("Deployment", runner),
        ("NetworkPolicy", runner),
        ("ConfigMap", runner),
        ("Secret", f"{runner}-kafka"),
    ):
        if kube.delete(kind, child, ns):
            removed.append(f"{kind} {ns}/{child}")
    pool = None
    with state.placement_lock:
        placed = state.placements.pop((ns, name), None)
        pool = placed[0] if placed else (body.get("status") or {}).get("pool")
    if removed:
        logger.info("deleted %s", ", ".join(removed))
    if pool:
        refresh_pool_status(state, pool)
