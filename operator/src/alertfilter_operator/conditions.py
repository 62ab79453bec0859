"""Status conditions as Kubernetes API conventions describe them (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now() -> str:
    """The current time in RFC 3339, seconds precision, UTC."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str, generation: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """Return ``conditions`` with ``type_`` set, and whether its status changed.

    ``lastTransitionTime`` changes only when the status does.
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


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def strimzi_ready(obj: dict[str, Any] | None) -> tuple[str, str, str]:
    """``(status, reason, message)`` of a Strimzi resource's Ready condition (Unknown when absent)."""
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


def deployment_ready(obj: dict[str, Any] | None, suspended: bool) -> tuple[str, str, str]:
    """``(status, reason, message)`` of a runner Deployment's availability."""
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
