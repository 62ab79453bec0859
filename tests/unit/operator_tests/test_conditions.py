"""Conditions as `kubectl get` and `kubectl describe` show them: status, reason, message, transitions."""

from __future__ import annotations

from typing import Any

import pytest

from alertfilter_operator import conditions
from alertfilter_operator.conditions import (
    FALSE,
    TRUE,
    UNKNOWN,
    deployment_ready,
    log_tail,
    ready_from,
    runner_pod_problem,
    set_condition,
    status_unchanged,
    strimzi_ready,
)

PARTS = ("SourceValid", "TopicReady", "RunnerReady")


def _cond(type_: str, status: str, reason: str = "R", message: str = "m") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def test_transition_time_moves_only_when_the_status_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conditions, "now", lambda: "2026-12-03T10:00:00Z")
    first, changed = set_condition([], "Ready", FALSE, "Pending", "waiting", 1)
    assert changed and first == [
        {
            "type": "Ready",
            "status": FALSE,
            "reason": "Pending",
            "message": "waiting",
            "lastTransitionTime": "2026-12-03T10:00:00Z",
            "observedGeneration": 1,
        }
    ]
    monkeypatch.setattr(conditions, "now", lambda: "2026-12-03T11:00:00Z")
    same, changed = set_condition(first, "Ready", FALSE, "Other", "still waiting", 2)
    assert not changed and same[0]["lastTransitionTime"] == "2026-12-03T10:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("Other", 2)
    flipped, changed = set_condition(same, "Ready", TRUE, "Ready", "ok", 2)
    assert changed and flipped[0]["lastTransitionTime"] == "2026-12-03T11:00:00Z"
    assert first[0]["status"] == FALSE  # the input is never modified


def test_ready_names_the_first_part_that_is_not_true() -> None:
    all_true = [_cond(t, TRUE) for t in PARTS]
    assert ready_from(all_true, PARTS, "all good") == (TRUE, "Ready", "all good")
    topic_false = [_cond("SourceValid", TRUE), _cond("TopicReady", FALSE, "NotReady", "no leader")]
    assert ready_from(topic_false, PARTS, "x") == (FALSE, "NotReady", "TopicReady is False: no leader")
    runner_unknown = [_cond(t, TRUE) for t in PARTS[:2]] + [_cond("RunnerReady", UNKNOWN, "NotFound", "not yet")]
    assert ready_from(runner_unknown, PARTS, "x") == (UNKNOWN, "NotFound", "RunnerReady is Unknown: not yet")
    assert ready_from([], PARTS, "x") == (UNKNOWN, "Pending", "SourceValid is Unknown: ")


def test_strimzi_ready_reads_the_ready_condition_strimzi_writes() -> None:
    assert strimzi_ready(None) == (UNKNOWN, "NotFound", "not created yet")
    assert strimzi_ready({"status": {}}) == (UNKNOWN, "Pending", "no Ready condition yet")
    assert strimzi_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}) == (TRUE, "Ready", "")
    bad = {"status": {"conditions": [{"type": "Ready", "status": "False", "message": "quota"}]}}
    assert strimzi_ready(bad) == (FALSE, "NotReady", "quota")


def _deployment(replicas: int, available: int, updated: int, generation: int = 1, seen: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": seen, "availableReplicas": available, "updatedReplicas": updated},
    }


def test_runner_is_ready_when_every_pod_is_updated_and_available() -> None:
    assert deployment_ready(_deployment(2, 2, 2), False) == (TRUE, "Available", "2/2 runner pods available")
    assert deployment_ready(_deployment(2, 1, 2), False) == (
        FALSE,
        "Unavailable",
        "1/2 runner pods available, 2 updated",
    )
    assert deployment_ready(_deployment(1, 1, 1, generation=2, seen=1), False)[1] == "Progressing"
    assert deployment_ready(None, False) == (UNKNOWN, "NotFound", "not created yet")
    assert deployment_ready(_deployment(1, 1, 1), True)[:2] == (FALSE, "Suspended")


def test_a_crashing_runner_says_why() -> None:
    crashed = {
        "metadata": {"name": "af-x-1"},
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 2, "message": "filter.py:1:1: ModuleNotFoundError\n"}},
                }
            ]
        },
    }
    healthy = {"metadata": {"name": "af-x-0"}, "status": {"containerStatuses": [{"state": {"running": {}}}]}}
    assert runner_pod_problem([healthy, crashed]) == (
        "CrashLoopBackOff",
        "pod af-x-1: CrashLoopBackOff, exit code 2: filter.py:1:1: ModuleNotFoundError",
    )
    pulling = {
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull", "message": "no such"}}}]},
    }
    assert runner_pod_problem([pulling]) == ("ErrImagePull", "pod p: ErrImagePull, no such")
    assert runner_pod_problem([healthy]) is None


def test_a_status_that_differs_only_in_transition_times_is_unchanged() -> None:
    old = {"pool": "a", "conditions": [{**_cond("Ready", TRUE), "lastTransitionTime": "t1"}]}
    assert status_unchanged(old, {"pool": "a", "conditions": [{**_cond("Ready", TRUE), "lastTransitionTime": "t2"}]})
    assert not status_unchanged(old, {"pool": "b", "conditions": old["conditions"]})
    assert not status_unchanged(old, {"conditions": [_cond("Ready", FALSE)]})


def test_runner_ready_quotes_a_repeated_log_line_once_with_its_count() -> None:
    log = "\n".join(
        [
            '{"time": "t1", "level": "INFO", "logger": "alertfilter.runner", "message": "starting"}',
            *[
                f'{{"time": "t{i}", "level": "WARNING", "logger": "alertfilter.runner", "message": "1/1 brokers are down"}}'
                for i in range(40)
            ],
            "%3|rdkafka|FAIL| connection refused",
            '{"time": "t9", "level": "ERROR", "logger": "alertfilter", "message": "stopped while waiting for the topics"}',
        ]
    )
    assert log_tail(log) == (
        "INFO starting | WARNING 1/1 brokers are down (x40) | %3|rdkafka|FAIL| connection refused"
        " | ERROR stopped while waiting for the topics"
    )
    crashed = {
        "metadata": {"name": "af-x-1"},
        "status": {"containerStatuses": [{"lastState": {"terminated": {"exitCode": 3, "message": log}}}]},
    }
    problem = runner_pod_problem([crashed])
    assert problem is not None and problem[1].count("brokers are down") == 1


def test_runner_ready_says_why_a_runner_pod_cannot_be_scheduled() -> None:
    pending = {
        "metadata": {"name": "af-big-1"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/6 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
                }
            ],
        },
    }
    assert runner_pod_problem([pending]) == (
        "Unschedulable",
        "pod af-big-1: 0/6 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
    )
