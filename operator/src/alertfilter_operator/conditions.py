"""Status conditions as Kubernetes API conventions describe them (pure).

A condition is a dict ``{type, status, reason, message, lastTransitionTime, observedGeneration}``
with ``status`` one of ``"True"``, ``"False"``, ``"Unknown"`` (the API conventions' strings).
Functions that read a child's state return a *verdict*: ``(status, reason, message)``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
#: (status, reason, message) of one condition, before it is set.
Verdict = tuple[str, str, str]


def now() -> str:
    """The current time in RFC 3339, seconds precision, UTC."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str, generation: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """Return ``conditions`` with ``type_`` set, and whether its status changed.

    ``lastTransitionTime`` changes only when the status does. The input list is not modified.
    """
    out = [dict(c) for c in conditions]
    for c in out:
        if c.get("type") == type_:
            changed = c.get("status") != status
            if changed:
                c["lastTransitionTime"] = now()
            c.update(status=status, reason=reason, message=message, observedGeneration=generation)
            return out, changed
    out.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now(),
            "observedGeneration": generation,
        }
    )
    return out, True


def get_condition(conditions: Iterable[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    """The condition of ``type_``, or None."""
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def ready_from(conditions: list[dict[str, Any]], parts: Iterable[str], ready_message: str) -> Verdict:
    """The ``Ready`` verdict of a resource whose readiness is that of all its ``parts``.

    Ready is True (reason ``Ready``, ``ready_message``) when every part is True. Otherwise the first
    part, in ``parts`` order, that is not True decides: Ready is False when that part is False, and
    Unknown when it is Unknown or not set yet; the reason is the part's (``Pending`` when unset), the
    message ``"<part> is <status>: <its message>"``.
    """
    for part in parts:
        c = get_condition(conditions, part) or {}
        if c.get("status") != TRUE:
            status = FALSE if c.get("status") == FALSE else UNKNOWN
            return status, c.get("reason", "Pending"), f"{part} is {c.get('status', UNKNOWN)}: {c.get('message', '')}"
    return TRUE, "Ready", ready_message


def strimzi_ready(obj: dict[str, Any] | None) -> Verdict:
    """The verdict of a Strimzi resource's Ready condition (Unknown when the object or condition is absent)."""
    if obj is None:
        return UNKNOWN, "NotFound", "not created yet"
    c = get_condition((obj.get("status") or {}).get("conditions"), "Ready")
    if c is None:
        return UNKNOWN, "Pending", "no Ready condition yet"
    return (
        c.get("status", UNKNOWN),
        c.get("reason") or ("Ready" if c.get("status") == TRUE else "NotReady"),
        c.get("message", ""),
    )


def deployment_ready(obj: dict[str, Any] | None, suspended: bool) -> Verdict:
    """The verdict of a runner Deployment's availability: all its replicas updated and available."""
    if suspended:
        return FALSE, "Suspended", "spec.suspend is true: the runner is scaled to zero"
    if obj is None:
        return UNKNOWN, "NotFound", "not created yet"
    spec_replicas = (obj.get("spec") or {}).get("replicas", 1)
    st = obj.get("status") or {}
    available = st.get("availableReplicas", 0) or 0
    updated = st.get("updatedReplicas", 0) or 0
    if st.get("observedGeneration", 0) < (obj.get("metadata") or {}).get("generation", 0):
        return FALSE, "Progressing", "the Deployment controller has not seen the latest spec yet"
    if available >= spec_replicas and updated >= spec_replicas:
        return TRUE, "Available", f"{available}/{spec_replicas} runner pods available"
    return FALSE, "Unavailable", f"{available}/{spec_replicas} runner pods available, {updated} updated"


#: Most log lines of a crashed runner that RunnerReady quotes (the last ones).
LOG_TAIL_LINES = 5


def log_tail(text: str) -> str:
    """The last lines of a container's log as a condition quotes them: the runner's JSON lines as
    ``LEVEL message``, a run of the same line once with ``(xN)``, at most :data:`LOG_TAIL_LINES`.

    The kubelet gives the log's tail as the termination message (``FallbackToLogsOnError``); a
    runner retrying a broker logs the same line many times, which would fill the condition.
    """
    lines: list[list[Any]] = []  # [text, count]
    for raw in text.strip().splitlines():
        line = raw.strip()
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and "message" in rec:
                line = f"{rec.get('level', '')} {rec['message']}".strip()
        except ValueError:
            pass
        if not line:
            continue
        if lines and lines[-1][0] == line:
            lines[-1][1] += 1
        else:
            lines.append([line, 1])
    return " | ".join(f"{t} (x{n})" if n > 1 else str(t) for t, n in lines[-LOG_TAIL_LINES:])


def runner_pod_problem(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first runner container that is waiting or crashed, from the Pods' status:
    e.g. ("CrashLoopBackOff", "pod af-x-1: CrashLoopBackOff, exit code 2: .../filter.py:1:1: ..."); None
    when every container runs."""
    for pod in pods:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                # e.g. "0/6 nodes are available: 2 Insufficient cpu": requests no node of the pool can hold
                why = c.get("message") or c.get("reason") or "not scheduled"
                return c.get("reason") or "Unschedulable", f"pod {pod['metadata']['name']}: {why}"
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting")
            last = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
            if waiting or (last and last.get("exitCode")):
                reason = (waiting or {}).get("reason") or (last or {}).get("reason") or "ContainerFailed"
                detail = ""
                if last:
                    detail = f"exit code {last.get('exitCode')}: {log_tail(last.get('message') or '')}"
                elif waiting and waiting.get("message"):
                    detail = waiting["message"]
                return reason, f"pod {pod['metadata']['name']}: {reason}" + (f", {detail}" if detail else "")
    return None


def conditions_equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal as sets of conditions, ignoring ``lastTransitionTime`` and order."""

    def strip(cs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in cs),
            key=lambda c: str(c.get("type", "")),
        )

    return strip(a) == strip(b)


def status_unchanged(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when merging ``new`` into the status ``old`` would change nothing but transition times."""
    return conditions_equal(old.get("conditions") or [], new.get("conditions") or []) and all(
        old.get(k) == v for k, v in new.items() if k != "conditions"
    )
