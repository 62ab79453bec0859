"""Replays of a running filter: the request the operator records, and when it is done (pure).

Setting ``spec.replayFrom`` (an RFC 3339 time) asks for a replay. The operator records the request
in ``status.replay`` before it changes anything (:func:`replay_request`): its ``requestId`` is the
filter's ``metadata.generation`` when the time was set, so a request keeps its id across operator
restarts and a later request always has a larger one. The operator then puts the id and the time
into the runner Deployment's environment (``ALERTFILTER_REPLAY_ID``, ``ALERTFILTER_REPLAY_FROM``):
the rollout stops the old runners, and each new runner, when it is assigned a partition whose
committed offset does not carry this request (or a later one) in its metadata, rewinds it to the
time (``offsets_for_times``), forgets the cap's counts of that partition and commits the new
position with the request in the metadata (``alertfilter.positions``). The mark travels with every
later commit, so neither a runner restart nor an operator restart replays a partition twice.

The operator never touches Kafka: it learns from the runners' status documents which partitions
carry the request and where they were rewound to, and records the replay complete once every
partition of the input does (:func:`replay_progress`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from alertfilter.convert import SettingError
from alertfilter.positions import parse_time

from .conditions import now as now_rfc3339
from .runner_status import RunnerReport


def instant(text: str) -> dt.datetime | None:
    """The UTC instant an RFC 3339 time names, or None when ``text`` is not one the runner accepts
    (:func:`alertfilter.positions.parse_time`, the rule the webhook applies to ``spec.replayFrom``)."""
    try:
        return parse_time(text).astimezone(dt.UTC)
    except SettingError:
        return None


def same_time(a: str | None, b: str | None) -> bool:
    """True when ``a`` and ``b`` are the same instant (``...Z`` and ``...+00:00`` are)."""
    if a is None or b is None:
        return a is b
    ta, tb = instant(a), instant(b)
    return ta is not None and ta == tb


def replay_request(
    replay_from: str | None, old: dict[str, Any] | None, generation: int | None, now: str | None = None
) -> tuple[dict[str, Any] | None, bool]:
    """The ``status.replay`` record for ``spec.replayFrom`` = ``replay_from``, and whether it is a new request.

    - no ``replayFrom``: the old record as it is (what was last replayed, and when), not new;
    - the same instant as the old record's ``from``: the old record (its id, its progress), not new;
    - otherwise a new record ``{from, requestId: generation, requestedAt: now}``.
    """
    if not replay_from:
        return old, False
    if old and same_time(old.get("from"), replay_from) and isinstance(old.get("requestId"), int):
        return old, False
    record = {"from": replay_from, "requestId": int(generation or 1), "requestedAt": now or now_rfc3339()}
    return {**record, "completedAt": None, "partitions": None}, True  # None: the merge patch drops the old ones


def pending_request(record: dict[str, Any] | None, replay_from: str | None) -> tuple[int, str] | None:
    """``(request id, time)`` the runners must carry out: the record's, while ``spec.replayFrom`` asks for it."""
    if not replay_from or not record or not isinstance(record.get("requestId"), int):
        return None
    return int(record["requestId"]), str(record["from"])


def replay_progress(
    record: dict[str, Any] | None, report: RunnerReport, now: str | None = None
) -> dict[str, Any] | None:
    """``status.replay`` after the runners' ``report``: the partitions whose committed offsets carry
    the request (with the offset each was rewound to), and ``completedAt`` once every partition of
    the input does. None when there is no request, it is already complete, or nothing changed."""
    if not record or record.get("completedAt") or not isinstance(record.get("requestId"), int):
        return None
    request = record["requestId"]
    done: dict[int, Any] = {}
    for (_, partition), fields in report.partitions.items():
        mark = fields.get("replay")
        if isinstance(mark, int) and mark >= request:
            done[partition] = fields.get("replayOffset") if mark == request else None
    partitions = [{"partition": p, "offset": o} if o is not None else {"partition": p} for p, o in sorted(done.items())]
    known = {p["partition"] for p in record.get("partitions") or [] if isinstance(p, dict)}
    merged = [*(p for p in record.get("partitions") or [] if isinstance(p, dict) and p.get("partition") not in done)]
    merged = sorted([*merged, *partitions], key=lambda p: p.get("partition", 0))
    total = report.values.get("inputPartitions")
    complete = isinstance(total, int) and total > 0 and len({p.get("partition") for p in merged}) >= total
    if not complete and known >= set(done):
        return None
    out = {**record, "partitions": merged}
    if complete:
        out["completedAt"] = now or now_rfc3339()
    return out
