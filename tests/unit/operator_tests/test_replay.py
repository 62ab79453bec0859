"""spec.startFrom and spec.replayFrom in the operator: what the schema and webhook refuse, the runner
environment, the replay request recorded before the runners hear of it (one id per request,
whatever restarts), and its completion from the runners' reports."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

import kopf
import pytest
from pydantic import ValidationError

from alertfilter_operator import alertfilters
from alertfilter_operator.builders import runner_env
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.models import AlertFilterSpec
from alertfilter_operator.observe import observed_fields
from alertfilter_operator.replay import pending_request, replay_progress, replay_request, same_time
from alertfilter_operator.runner_status import merge
from alertfilter_operator.state import State
from alertfilter_operator.webhook import validate_positions as _validate_positions

from .conftest import SOURCE, filter_ref, pool_spec
from .fake_kube import FakeKube
from .helpers import env_dict

LOG = logging.getLogger("test")
#: kopf types the webhook handler with kopf.Spec; the tests pass the dict it is.
validate_positions: Any = _validate_positions
T = "2026-06-01T00:00:00Z"


@pytest.mark.parametrize("value", ["latest", "earliest", T, "2026-06-01T02:00:00.25+02:00"])
def test_start_positions_the_runner_takes_are_accepted(value: str) -> None:
    assert AlertFilterSpec.model_validate({"source": SOURCE, "startFrom": value}).startFrom == value
    validate_positions(spec={"startFrom": value, "replayFrom": None if value in ("latest", "earliest") else value})


@pytest.mark.parametrize(
    "value", ["now", "LATEST ", "2026-02-30T00:00:00Z", "2026-06-01 00:00:00Z", "2026-06-01T00:00:00"]
)
def test_a_start_or_replay_time_that_is_not_one_is_refused_with_what_is_expected(value: str) -> None:
    with pytest.raises(ValidationError, match=r"spec\.replayFrom must be an RFC 3339 time"):
        AlertFilterSpec.model_validate({"source": SOURCE, "replayFrom": value})
    with pytest.raises(kopf.AdmissionError, match=r"spec\.replayFrom: must be an RFC 3339 time such as"):
        validate_positions(spec={"replayFrom": value})
    if value != "LATEST ":  # the runner takes any case; the CRD's rule only lower case
        with pytest.raises(ValidationError, match=r"spec\.startFrom must be latest, earliest or an RFC 3339 time"):
            AlertFilterSpec.model_validate({"source": SOURCE, "startFrom": value})


def test_a_new_filter_starts_from_now_on_and_the_runner_is_told(pool: Any) -> None:
    ref = filter_ref()
    assert ref.spec.startFrom == "latest"
    env = env_dict(runner_env(ref, pool))
    assert env["ALERTFILTER_START_FROM"] == "latest"
    assert "ALERTFILTER_REPLAY_FROM" not in env and "ALERTFILTER_REPLAY_ID" not in env
    env = env_dict(runner_env(dataclasses.replace(filter_ref(startFrom="earliest"), replay=(7, T)), pool))
    assert env["ALERTFILTER_START_FROM"] == "earliest"
    assert (env["ALERTFILTER_REPLAY_ID"], env["ALERTFILTER_REPLAY_FROM"]) == ("7", T)


def test_a_replay_request_keeps_its_id_until_the_time_changes() -> None:
    record, new = replay_request(T, None, 4, now="2026-06-02T00:00:00Z")
    assert new and record == {
        "from": T,
        "requestId": 4,
        "requestedAt": "2026-06-02T00:00:00Z",
        "completedAt": None,
        "partitions": None,
    }
    old = {"from": T, "requestId": 4, "requestedAt": "x", "completedAt": "y"}
    assert replay_request("2026-06-01T02:00:00+02:00", old, 9) == (old, False)  # the same instant
    assert replay_request(None, old, 9) == (old, False)  # removed: the record stays as history
    assert replay_request("2026-05-01T00:00:00Z", old, 9)[0]["requestId"] == 9  # type: ignore[index]
    assert pending_request(old, T) == (4, T) and pending_request(old, None) is None
    assert same_time("2026-06-01T00:00:00z", T) and not same_time(T, "2026-06-01T00:00:01Z")


def report(*partitions: dict[str, Any], total: int | None = 2) -> Any:
    values = {"inputPartitions": total} if total else {}
    return merge([{"format": 1, "time": "t", "values": values, "partitions": list(partitions)}])


def test_a_replay_completes_once_every_partition_carries_it() -> None:
    record = {"from": T, "requestId": 4, "requestedAt": "r"}
    p0 = {"topic": "alerts", "partition": 0, "replay": 4, "replayOffset": 120}
    p1 = {"topic": "alerts", "partition": 1, "replay": 3, "replayOffset": 5}  # an older request: not done
    half = replay_progress(record, report(p0, p1), now="c")
    assert half == {**record, "partitions": [{"partition": 0, "offset": 120}]}
    assert replay_progress(half, report(p0, p1)) is None  # nothing new
    done = replay_progress(half, report({**p1, "replay": 4, "replayOffset": 7}), now="c")  # another pod, later
    assert done == {
        **record,
        "partitions": [{"partition": 0, "offset": 120}, {"partition": 1, "offset": 7}],
        "completedAt": "c",
    }
    assert replay_progress(done, report(p0)) is None  # complete: left as it is
    assert replay_progress(record, report(p0, total=None)) is not None  # progress without knowing the total...
    assert "completedAt" not in (replay_progress(record, report(p0, total=None)) or {})  # ...but never complete
    assert observed_fields(report(p0, {**p1, "replay": 4}), {"replay": record})["replay"]["completedAt"]


@pytest.fixture
def kube() -> FakeKube:
    spec = pool_spec().model_dump(by_alias=True)
    return FakeKube(
        [
            {
                "apiVersion": "alerts.lsst.io/v1alpha1",
                "kind": "FilterPool",
                "metadata": {"name": "pool-a", "uid": "u", "generation": 1},
                "spec": spec,
            }
        ]
    )


def _filter(generation: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": "f", "namespace": "sci", "uid": "uid-f", "generation": generation},
        "spec": {"source": SOURCE, "pool": "pool-a", **spec},
    }


def _reconcile(kube: FakeKube, body: dict[str, Any]) -> dict[str, str]:
    live = kube.find("AlertFilter", "f", "sci")
    kube.put({**body, "status": (live or {}).get("status") or {}})
    with contextlib.suppress(kopf.TemporaryError):  # waiting for the KafkaUser's password: applied all the same
        alertfilters.reconcile(State(kube, OperatorConfig()), body, LOG, {})
    dep = kube.find("Deployment", "af-f", "sci")
    assert dep is not None
    return env_dict(dep["spec"]["template"]["spec"]["containers"][0]["env"])


def test_the_operator_records_a_replay_request_once_and_tells_the_runners(kube: FakeKube) -> None:
    env = _reconcile(kube, _filter(1))
    assert env["ALERTFILTER_START_FROM"] == "latest" and "ALERTFILTER_REPLAY_ID" not in env
    env = _reconcile(kube, _filter(2, replayFrom=T))
    assert (env["ALERTFILTER_REPLAY_ID"], env["ALERTFILTER_REPLAY_FROM"]) == ("2", T)
    replay = kube.find("AlertFilter", "f", "sci")["status"]["replay"]  # type: ignore[index]
    assert replay["from"] == T and replay["requestId"] == 2 and replay["requestedAt"]
    assert [e["reason"] for e in kube.events()].count("ReplayRequested") == 1
    # another edit (or an operator restart, which reconciles again): the same request, the same id
    env = _reconcile(kube, _filter(3, replayFrom=T, replicas=2))
    assert env["ALERTFILTER_REPLAY_ID"] == "2"
    assert [e["reason"] for e in kube.events()].count("ReplayRequested") == 1
    # a new time: a new request
    assert _reconcile(kube, _filter(4, replayFrom="2026-05-01T00:00:00Z"))["ALERTFILTER_REPLAY_ID"] == "4"


def test_a_time_past_the_calendar_in_utc_is_no_instant_not_a_crash_of_the_reconcile() -> None:
    from alertfilter_operator.replay import instant, same_time

    assert instant("9999-12-31T23:59:59-01:00") is None
    assert not same_time("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59-01:00")
