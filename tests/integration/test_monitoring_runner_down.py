"""``AlertFilterRunnerDown`` under a PodMonitor's semantics, checked by the real ``promtool``.

A PodMonitor's target exists only while its pod does (and has an IP): a runner pod that is deleted,
evicted or cannot be scheduled leaves no target, so ``up`` is not 0 but absent (stale), and
``up == 0`` alone never fires. The rule's second half reads kube-state-metrics: a runner
Deployment (``af-<filter>``) that wants a pod, has none available, and has no target at all. Each
case below is a timeline of the series Prometheus would hold (staleness markers as ``stale``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_monitoring import CHART, tool

NS, FILTER, POOL = "science", "bright", "pool-a"
RUNNER = {"job": "alertfilter-runner", "namespace": NS, "filter": FILTER, "pool": POOL}
KSM = {"job": "kube-state-metrics", "namespace": NS, "deployment": f"af-{FILTER}", "instance": "10.0.0.9:8080"}
WHO = {"namespace": NS, "filter": FILTER, "severity": "warning"}


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


def up(pod: str, values: str) -> dict[str, str]:
    return _series("up", {**RUNNER, "pod": pod, "instance": f"{pod}:8080"}, values)


def deployment(wanted: str, available: str) -> list[dict[str, str]]:
    return [
        _series("kube_deployment_spec_replicas", KSM, wanted),
        _series("kube_deployment_status_replicas_available", KSM, available),
    ]


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("build-promtool.sh", "promtool")


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's RunnerDown rule alone (annotations off: they hold $labels), rendered by helm."""
    helm = tool("build-helm.sh", "helm")
    r = subprocess.run(
        [helm, "template", "t", str(CHART), "--set", "monitoring.prometheusRule.enabled=true"],
        capture_output=True,
        text=True,
        check=True,
    )
    (rule,) = [d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "PrometheusRule"]
    groups = rule["spec"]["groups"]
    for g in groups:
        g["rules"] = [{k: v for k, v in x.items() if k != "annotations"} for x in g["rules"]]
        g["rules"] = [x for x in g["rules"] if x.get("alert") == "AlertFilterRunnerDown"]
    path: Path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


CASES: dict[str, tuple[list[dict[str, str]], list[tuple[str, list[dict[str, Any]]]]]] = {
    # the runner's pod is deleted or evicted at minute 4 and no other takes its place
    "pod vanishes": (
        [up("af-bright-1", "1x3 stale"), *deployment("1x30", "1x3 0x27")],
        [("6m", []), ("10m", [{"exp_labels": WHO}])],
    ),
    # a new filter whose runner pod is never scheduled (no node of the pool has room): never a target
    "never scheduled": ([*deployment("1x30", "0x30")], [("4m", []), ("6m", [{"exp_labels": WHO}])]),
    # the pod runs but its /metrics does not answer: the PodMonitor's target is down
    "scrape fails": (
        [up("af-bright-1", "1x3 0x27"), *deployment("1x30", "1x3 0x27")],
        [("10m", [{"exp_labels": {**WHO, "pool": POOL, "pod": "af-bright-1"}}])],  # once: with its pod
    ),
    # spec.suspend: the Deployment is scaled to 0 on purpose
    "suspended": ([up("af-bright-1", "1x3 stale"), *deployment("1x3 0x27", "1x3 0x27")], [("10m", []), ("25m", [])]),
    # the AlertFilter is deleted: its Deployment and pod go together
    "filter deleted": ([up("af-bright-1", "1x3 stale"), *deployment("1x3 stale", "1x3 stale")], [("10m", [])]),
    # a new source: the old pod ends, the new one is up two minutes later (maxSurge 0)
    "rolling update": (
        [up("af-bright-1", "1x3 stale"), up("af-bright-2", "_x5 1x25"), *deployment("1x30", "1x3 0x2 1x25")],
        [("10m", []), ("25m", [])],
    ),
    "healthy": ([up("af-bright-1", "1x30"), *deployment("1x30", "1x30")], [("25m", [])]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_runner_down_fires_when_the_runner_is_gone_or_unscraped_and_only_then(promtool, rule_file, tmp_path, case):
    series, expected = CASES[case]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": t, "alertname": "AlertFilterRunnerDown", "exp_alerts": alerts} for t, alerts in expected
            ],
        }
    ]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": [str(rule_file)], "tests": tests}))
    r = subprocess.run([promtool, "test", "rules", "t.yaml"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
