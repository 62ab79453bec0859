"""The ``Limited`` condition of an AlertFilter, from what its runners report (``spec.limits``).

Each runner publishes, in its status document (``alertfilter.runstatus``, read by
``runner_status.py``), the value ``limits`` (``alertfilter.limits.LimitGuard.status``)::

    {"maxAcceptedPerDay": {"value": 500, "limited": true, "trippedAt": 1764763391},
     "maxMatchRate": {"value": 0.05, "limited": false, "trippedAt": null, "window": 1000}}

:func:`merge_limits` merges the pods' documents (a limit stops the filter when it stops one of its
runners, since the earliest trip); :func:`limited_verdict` gives the condition, e.g. ``True,
LimitReached, "maxAcceptedPerDay 500 reached at 12:03:11 UTC; forwarding resumes at 00:00 UTC"``;
:func:`limited_change` applies it to a status's conditions and says which Event to post. Pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, TypeGuard

from alertfilter.limitspec import LIMIT_NAMES, MAX_MATCH_RATE

from .conditions import FALSE, TRUE, Verdict, get_condition, set_condition

#: The condition's type.
LIMITED = "Limited"
#: Its reasons: a limit stops forwarding; none does.
LIMIT_REACHED = "LimitReached"
WITHIN_LIMITS = "WithinLimits"
#: The Event's reason when forwarding resumes (a new UTC day or window).
LIMIT_RESET = "LimitReset"


def _figure(value: Any) -> str:
    # what a pod reports, so bounded: a condition's message must stay short
    return (f"{value:g}" if isinstance(value, float) else str(value))[:40]


def _epoch(t: Any) -> TypeGuard[float]:
    """True for a Unix time a runner can have tripped at (finite, 1970 to 9999): anything else a
    pod reports (NaN, 1e300, a string) is left out, never a failed status round."""
    return isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 253_402_300_800


def merge_limits(per_pod: Iterable[Any]) -> dict[str, dict[str, Any]] | None:
    """The ``limits`` values of a filter's runner pods as one: each limit's figure (the first pod's),
    ``limited`` when any pod is, ``trippedAt`` the earliest of those pods' trips, and ``pods`` /
    ``limitedPods``, how many pods report it / are stopped by it (each pod has its share of a
    per-day limit); None when no pod reports limits. Malformed entries are left out."""
    out: dict[str, dict[str, Any]] = {}
    for value in per_pod:
        if not isinstance(value, dict):
            continue
        for name, entry in value.items():
            if name not in LIMIT_NAMES or not isinstance(entry, dict):
                continue
            merged = out.setdefault(
                name, {"value": entry.get("value"), "limited": False, "trippedAt": None, "pods": 0, "limitedPods": 0}
            )
            merged["pods"] += 1
            if isinstance(entry.get("window"), int):
                merged["window"] = entry["window"]
            if entry.get("limited") is True:
                merged["limited"] = True
                merged["limitedPods"] += 1
                t = entry.get("trippedAt")
                if _epoch(t):
                    merged["trippedAt"] = t if merged["trippedAt"] is None else min(merged["trippedAt"], t)
    return out or None


def limit_message(name: str, entry: dict[str, Any]) -> str:
    """What one limit that stops forwarding says: ``maxAcceptedPerDay 500 reached at 12:03:11 UTC;
    forwarding resumes at 00:00 UTC``."""
    t = entry.get("trippedAt")
    when = f" at {dt.datetime.fromtimestamp(t, dt.UTC).strftime('%H:%M:%S')} UTC" if _epoch(t) else ""
    if name == MAX_MATCH_RATE:
        window = entry.get("window")
        of = f" of {window} alerts" if window else ""
        return f"{name} {_figure(entry.get('value'))} passed{when}; forwarding resumes with the next window{of}"
    pods = entry.get("pods") or 1
    if pods > 1:  # each pod counts its share of the filter's limit
        return (
            f"{name} {_figure(entry.get('value'))} per runner pod reached{when} ({entry.get('limitedPods')} of "
            f"{pods} pods stopped); forwarding resumes at 00:00 UTC"
        )
    return f"{name} {_figure(entry.get('value'))} reached{when}; forwarding resumes at 00:00 UTC"


def limited_verdict(limits: dict[str, dict[str, Any]] | None) -> Verdict | None:
    """The Limited verdict of merged ``limits`` (:func:`merge_limits`); None when the runners report none."""
    if not limits:
        return None
    stopped = [limit_message(n, limits[n]) for n in LIMIT_NAMES if n in limits and limits[n].get("limited")]
    if stopped:
        return TRUE, LIMIT_REACHED, "; ".join(stopped)
    figures = ", ".join(f"{n} {_figure(limits[n].get('value'))}" for n in LIMIT_NAMES if n in limits)
    return FALSE, WITHIN_LIMITS, f"forwarding: no limit passed ({figures})"


def limited_change(
    conditions: list[dict[str, Any]], per_pod: Iterable[Any], answered: int, generation: int | None
) -> tuple[list[dict[str, Any]] | None, tuple[str, str, str] | None]:
    """Apply what the runners report to a status's ``conditions``.

    Args:
        per_pod: each answering runner's ``limits`` value (``RunnerReport.per_pod("limits")``).
        answered: how many runners answered (none: nothing is known, nothing changes).
        generation: the ``observedGeneration`` the condition carries.

    Returns:
        ``(new conditions or None when unchanged, (event type, reason, message) or None)``: an Event
        when the condition's status changed (Warning ``LimitReached``, Normal ``LimitReset``). A
        filter whose runners report no limits gets no Limited condition; one that had it gets False.
    """
    if not answered:
        return None, None
    verdict = limited_verdict(merge_limits(per_pod))
    old = get_condition(conditions, LIMITED)
    if verdict is None:
        if old is None or old.get("status") == FALSE:
            return None, None
        verdict = FALSE, WITHIN_LIMITS, "no limits are set"
    status, reason, message = verdict
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == verdict:
        return None, None
    new, changed = set_condition(conditions, LIMITED, status, reason, message, generation)
    if not changed:
        return new, None
    if status == TRUE:
        return new, ("Warning", LIMIT_REACHED, message)
    if old is None:  # a first reading within limits is no news
        return new, None
    return new, ("Normal", LIMIT_RESET, f"forwarding resumed: {message}")
