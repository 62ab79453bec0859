"""The operator without its webhook, killed mid-reconcile, and under 100 filters at once."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from .operator_harness import (
    OperatorProcess,
    alertfilter,
    apply_json,
    condition,
    get,
    make_pool,
    wait_condition,
    wait_for,
)

BAD_SOURCE = (
    "from alertfilter import AlertFilter\n\nclass F(AlertFilter):\n    def filter(self, alert)\n        return True\n"
)


@pytest.fixture(scope="module")
def operator(apiserver, tmp_path_factory):
    # The webhook off: what the reconcile itself must catch.
    op = OperatorProcess(apiserver, tmp_path_factory.mktemp("operator"), ALERTFILTER_OPERATOR_WEBHOOK="off").start()
    yield op
    op.stop()


def test_invalid_source_is_reported_with_line_and_column_and_gets_no_runner(apiserver, operator, namespace):
    pname, kns = make_pool(apiserver)
    apply_json(apiserver, alertfilter("typo", pool=pname), namespace)
    wait_for(lambda: get(apiserver, "deployment", "af-typo", namespace), 60, "the runner")
    apply_json(apiserver, alertfilter("typo", BAD_SOURCE, pool=pname), namespace)
    af = wait_condition(apiserver, "alertfilter", "typo", namespace, "SourceValid", status="False")
    assert af["status"]["sourceError"] == {"line": 4, "column": 28, "message": "syntax error: expected ':'"}
    assert condition(af, "SourceValid")["message"].startswith("line 4, column 28:")
    assert condition(af, "Ready")["status"] == "False"
    wait_for(lambda: get(apiserver, "deployment", "af-typo", namespace) is None, 30, "the runner to go")
    assert get(apiserver, "kafkatopic", f"af.{namespace}.typo.output", kns) is not None  # the topic and its data stay
    events = apiserver.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "SourceValid=False: line 4, column 28" in events
    # fixing the source recovers
    apply_json(apiserver, alertfilter("typo", BAD_SOURCE.replace("alert)\n", "alert):\n"), pool=pname), namespace)
    wait_for(lambda: get(apiserver, "deployment", "af-typo", namespace), 60, "the runner to come back")
    af = get(apiserver, "alertfilter", "typo", namespace)
    assert condition(af, "SourceValid")["status"] == "True" and "sourceError" not in af["status"]


def _snapshot(apiserver, namespace: str, kns: str) -> dict[str, str]:
    out = {}
    for kind, ns, selector in (
        ("configmaps,deployments,networkpolicies", namespace, "alerts.lsst.io/filter"),
        ("kafkatopics,kafkausers", kns, "alerts.lsst.io/owner-kind=AlertFilter"),
    ):
        items = json.loads(apiserver.kubectl("get", kind, "-n", ns, "-l", selector, "-o", "json").stdout)["items"]
        out.update({f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items})
    return out


def test_killed_mid_reconcile_the_operator_converges_and_reapplying_changes_nothing(apiserver, operator, namespace):
    pname, kns = make_pool(apiserver)
    n = 20
    items = [alertfilter(f"k{i}", pool=pname) for i in range(n)]
    apply_json(apiserver, {"apiVersion": "v1", "kind": "List", "items": items}, namespace)
    time.sleep(1.0)
    operator.stop(signal.SIGKILL)
    operator.start()

    last: dict[str, Any] = {}

    def converged():
        afs = json.loads(apiserver.kubectl("get", "alertfilters", "-n", namespace, "-o", "json").stdout)["items"]
        done = [
            a
            for a in afs
            if (a.get("status") or {}).get("observedGeneration") == a["metadata"]["generation"]
            and condition(a, "SourceValid").get("status") == "True"
        ]
        snap = _snapshot(apiserver, namespace, kns)
        last["seen"] = (len(done), len(snap), sorted({k.split("/")[0] for k in snap}))
        return len(done) == n and len(snap) == 6 * n  # 3 here, 3 in Kafka's namespace

    try:
        wait_for(converged, 180, f"{n} filters to converge after a SIGKILL")
    except AssertionError:
        raise AssertionError(f"not converged: (filters done, children, kinds) = {last.get('seen')}") from None
    before = _snapshot(apiserver, namespace, kns)
    # a restart resumes every filter and re-applies every child: nothing may change
    operator.stop()
    operator.start()

    # the restarted operator ran its resume handler to the end for every filter (its log names the
    # object; with no Strimzi here to make their passwords, the handler ends waiting for them) ...
    def resumed() -> bool:
        log = operator.log_path.read_text()
        return all(f"[{namespace}/k{i}] Handler 'reconcile_alertfilter' " in log for i in range(n))

    wait_for(resumed, 180, f"the restarted operator to resume all {n} filters")
    # ... and re-applying their children changed none of them
    assert _snapshot(apiserver, namespace, kns) == before


def test_a_hundred_filters_applied_at_once_are_all_reconciled(apiserver, operator, namespace, record_property):
    pname, _kns = make_pool(apiserver, capacity=(4, 50))
    n = 100
    t0 = time.monotonic()
    apply_json(
        apiserver,
        {"apiVersion": "v1", "kind": "List", "items": [alertfilter(f"h{i:03d}", pool=pname) for i in range(n)]},
        namespace,
    )

    def all_done():
        afs = json.loads(apiserver.kubectl("get", "alertfilters", "-n", namespace, "-o", "json").stdout)["items"]
        deps = json.loads(apiserver.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
        ok = [
            a
            for a in afs
            if (a.get("status") or {}).get("pool") == pname and condition(a, "SourceValid").get("status") == "True"
        ]
        return len(ok) == n and len(deps) == n

    wait_for(all_done, 300, f"{n} filters to be reconciled", interval=1.0)
    elapsed = time.monotonic() - t0
    rss = operator.rss_peak_kib()
    record_property("reconcile_100_seconds", round(elapsed, 1))
    record_property("operator_peak_rss_mib", round(rss / 1024, 1))
    print(f"\n100 AlertFilters reconciled in {elapsed:.1f} s; operator peak RSS {rss / 1024:.0f} MiB")
    pool = wait_for(
        lambda: (p := get(apiserver, "filterpool", pname)) and (p.get("status") or {}).get("used") == n and p,
        60,
        "the pool's use to show 100",
    )
    assert pool["status"]["free"] == 100
