"""Reading a filter's runners into its status: the consumer lag, the last accepted alert, replays.

The per-filter ``runner-status`` daemon (``handlers.py``) calls :func:`observe` every
``runnerStatusSeconds``: it asks each runner pod for its status document (``runner_status.py``:
``GET /status`` on the pod's metrics port, no Kafka credential needed), derives the status fields
from the merged report (:func:`observed_fields`, pure) and merge-patches those fields alone when
they changed (never ``observedGeneration``, which belongs to the reconcile; of the conditions only
``Limited``, which the runners alone know: :mod:`.limited`, with an Event when it changes).
"""

from __future__ import annotations

from typing import Any

import kopf

from .limited import limited_change
from .naming import FILTER_LABEL, runner_name
from .replay import replay_progress
from .runner_status import RunnerReport, read_runners
from .state import State


def observed_fields(report: RunnerReport, old: dict[str, Any]) -> dict[str, Any]:
    """The status fields the runners' ``report`` gives, from the filter's status ``old``:

    - ``lag``: messages behind the input's end, summed over the partitions the runners report;
      removed when no runner answered (the lag is then unknown);
    - ``lastAcceptedTime``: the latest of the runners' and the one already recorded (a restarted
      runner has not accepted anything yet);
    - ``replay``: the recorded replay request, completed once every input partition carries it
      (:func:`.replay.replay_progress`).
    """
    fields: dict[str, Any] = {"lag": report.lag if report.answered else None}
    times = [t for t in (old.get("lastAcceptedTime"), report.values.get("lastAcceptedTime")) if isinstance(t, str)]
    if times:
        fields["lastAcceptedTime"] = max(times)
    replay = replay_progress(old.get("replay"), report)
    if replay is not None:
        fields["replay"] = replay
    return fields


def observe(state: State, namespace: str, name: str, logger: kopf.Logger) -> dict[str, Any] | None:
    """Read the filter's runner pods and write what they report into its status (when it changed);
    returns the fields written, or None (nothing changed, or the filter is gone)."""
    kube = state.kube
    pods = kube.list("Pod", namespace, f"{FILTER_LABEL}={name}")
    # outside the lock: pods may be slow to answer; only the runner Deployment's pods are asked
    report = read_runners(pods, state.config.runner_status_port, deployment=runner_name(name))
    with state.lock("AlertFilter", namespace, name):
        body = kube.get("AlertFilter", name, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        old = body.get("status") or {}
        fields = observed_fields(report, old)
        changed = {k: v for k, v in fields.items() if old.get(k) != v}
        # spec.limits: the Limited condition from the runners' "limits" values, an Event when it flips
        conditions, event = limited_change(
            old.get("conditions") or [], report.per_pod("limits"), report.answered, old.get("observedGeneration")
        )
        if conditions is not None:
            changed["conditions"] = conditions
        if not changed:
            return None
        kube.patch_status("AlertFilter", name, namespace, changed)
        if event is not None:
            kube.post_event(body, *event)
        done = changed.get("replay", {}).get("completedAt") if isinstance(changed.get("replay"), dict) else None
        if done and not (old.get("replay") or {}).get("completedAt"):
            replay = changed["replay"]
            message = f"replayed from {replay.get('from')} (request {replay.get('requestId')}), completed {done}"
            kube.post_event(body, "Normal", "Replayed", message)
            logger.info("%s", message)
        return changed
