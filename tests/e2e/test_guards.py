"""spec.limits on real runner pods (issue #15): each guard trips at its figure on real alerts, the
alerts past it are counted and their offsets committed (the consumer group reaches the end of its
input), the AlertFilter gets ``Limited`` True with the figure and a ``LimitReached`` Event; the
match-rate guard resets at the next window of 1,000 alerts; a raised per-day figure lets the same
day's forwarding resume (``LimitReset``) up to the new figure. The UTC-midnight reset of the per-day
guards is proven with the runner's clock moved in tests/integration/test_limits_kafka.py.

The three filters start from a time (``spec.startFrom``) just before their alerts are produced, so
each counts exactly the alerts of this test.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from .conftest import (apply_filter, committed_to_end, condition, end_offset, produce_batch, read, runner_pods,
                       wait_for)

ACCEPT_ALL = "def everything(alert):\n    return True\n"
PER_DAY, BYTES_PER_DAY, RATE = 5, 1_000_000, 0.01
#: 42 copies of the 24 shared real alerts: the rate guard's first window of 1,000 and 8 of the next.
COPIES = 42


def events(cp, ns: str, name: str) -> list[dict]:
    r = cp.kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json",
                   check=False)  # fmt: skip
    return json.loads(r.stdout).get("items", []) if r.returncode == 0 else []


def limited(cp, ns: str, name: str) -> dict:
    return condition(cp, ns, name, "Limited")


@pytest.fixture(scope="module")
def guarded(devstack, alerts_dir):
    """(namespace, {filter: (group, input topic)}, alerts produced): three guarded filters that read
    the same 1,008 alerts."""
    from alertfilter_devstack.stack import RESTRICTED

    st, cp, _ = devstack
    ns = f"e2e-guards-{uuid.uuid4().hex[:4]}"
    cp.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": RESTRICTED}}))  # fmt: skip
    # the next whole second: no earlier test's alert is at or after it
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    specs = {"per-day": {"maxAcceptedPerDay": PER_DAY}, "bytes": {"maxBytesPerDay": BYTES_PER_DAY},
             "rate": {"maxMatchRate": RATE}}  # fmt: skip
    for name, limits in specs.items():
        # no per-visit cap (0): each guard alone decides what is forwarded
        apply_filter(cp, ns, name, ACCEPT_ALL, ready=False, limits=limits, startFrom=start, maxAlertsPerVisit=0)
    for name in specs:
        wait_for(lambda n=name: condition(cp, ns, n, "Ready").get("status") == "True", 300, f"{name} Ready")
    topics = {}
    for name in specs:
        s = cp.get_json("alertfilter", name, "-n", ns)["status"]
        topics[name] = (s["names"]["consumerGroup"], s["inputTopic"])
    pool = st["kafka_pool"]["bootstrap"]
    before = {t: end_offset(pool, t) for _, t in topics.values()}
    res = produce_batch(st, alerts_dir, copies=COPIES, first_visit=9_000 + int(uuid.uuid4().int % 10**6))
    for name, (group, topic) in topics.items():
        wait_for(lambda g=group, t=topic: end_offset(pool, t) >= before[t] + res.alerts and committed_to_end(pool, g, t),
                 420, f"{name}'s runner to count every alert (its consumer group at the end of {topic})")  # fmt: skip
    yield ns, topics, res.alerts
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_max_accepted_per_day_trips_with_its_figure_and_an_event(devstack, guarded):
    st, cp, _ = devstack
    ns, _, produced = guarded
    assert produced == 24 * COPIES
    assert len(read(st["kafka_pool"]["bootstrap"], f"{ns}.per-day")) == PER_DAY
    c = wait_for(lambda: (c := limited(cp, ns, "per-day")).get("status") == "True" and c, 120, "Limited True")
    assert c["reason"] == "LimitReached"
    assert f"maxAcceptedPerDay {PER_DAY} reached at" in c["message"] and "resumes at 00:00 UTC" in c["message"], c
    ev = wait_for(lambda: [e for e in events(cp, ns, "per-day") if e["reason"] == "LimitReached"], 60, "the Event")
    assert ev[0]["type"] == "Warning" and f"maxAcceptedPerDay {PER_DAY}" in ev[0]["message"]


def test_max_bytes_per_day_never_forwards_more_bytes(devstack, guarded):
    st, cp, _ = devstack
    ns, _, _ = guarded
    out = read(st["kafka_pool"]["bootstrap"], f"{ns}.bytes")
    assert out, "the byte guard let nothing through: its figure was not reached by one alert"
    assert sum(len(m.value()) for m in out) <= BYTES_PER_DAY
    c = wait_for(lambda: (c := limited(cp, ns, "bytes")).get("status") == "True" and c, 120, "Limited True")
    assert f"maxBytesPerDay {BYTES_PER_DAY} reached at" in c["message"], c


def test_max_match_rate_trips_in_its_window_and_the_next_window_resets_it(devstack, guarded):
    st, cp, _ = devstack
    ns, _, produced = guarded
    # 1 % of the first window of 1,000 alerts, then the next window's first 8 (under its 1 %: 10)
    assert len(read(st["kafka_pool"]["bootstrap"], f"{ns}.rate")) == 10 + (produced - 1000)
    wait_for(lambda: limited(cp, ns, "rate").get("status") == "False", 120, "Limited False in the next window")
    reasons = [e["reason"] for e in events(cp, ns, "rate")]
    # the runner status is polled: a trip and its reset both happen within one alert stream, so the
    # operator may see the window only after it reset; the metric of the pod says it tripped
    pod = runner_pods(cp, ns, "rate")[0]["metadata"]["name"]
    metrics = cp.raw(f"/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/metrics")
    trips = [line for line in metrics.splitlines()
             if line.startswith('alertfilter_limit_trips_total{limit="maxMatchRate"}')]  # fmt: skip
    assert trips and float(trips[0].split()[-1]) == 1.0, (trips, reasons)


def test_a_raised_figure_resumes_forwarding_the_same_day(devstack, guarded, alerts_dir):
    st, cp, _ = devstack
    ns, topics, _ = guarded
    pool = st["kafka_pool"]["bootstrap"]
    wait_for(lambda: limited(cp, ns, "per-day").get("status") == "True", 120, "Limited True")
    cp.kubectl("patch", "alertfilter", "per-day", "-n", ns, "--type=merge", "-p",
               json.dumps({"spec": {"limits": {"maxAcceptedPerDay": PER_DAY + 3}}}))  # fmt: skip
    c = wait_for(lambda: (c := limited(cp, ns, "per-day")).get("status") == "False" and c, 300,
                 "Limited False under the raised figure")  # fmt: skip
    assert f"maxAcceptedPerDay {PER_DAY + 3}" in c["message"], c
    assert "LimitReset" in [e["reason"] for e in events(cp, ns, "per-day")]
    group, topic = topics["per-day"]
    before = end_offset(pool, topic)
    res = produce_batch(st, alerts_dir, copies=1, first_visit=9_000 + int(uuid.uuid4().int % 10**6))
    wait_for(lambda: end_offset(pool, topic) >= before + res.alerts and committed_to_end(pool, group, topic), 300,
             "the runner to count the new alerts")  # fmt: skip
    assert len(read(pool, f"{ns}.per-day")) == PER_DAY + 3  # the same day's count goes on: 3 more, no more
    wait_for(lambda: limited(cp, ns, "per-day").get("status") == "True", 120, "Limited True again")
