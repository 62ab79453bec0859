"""The chart's monitoring parts on a real API server that has the Prometheus Operator's CRDs
(PodMonitor, PrometheusRule; fetched from its Go module by hack/prometheus-operator-crds.sh): the
server's schema validation accepts the PodMonitors, the PrometheusRule and the dashboard's
ConfigMap as helm renders them, keeps every field (a field the schema does not know would be
pruned without a word), and refuses a broken one, so the validation is really on.

What the schemas cannot see (a PromQL expression's meaning) is promtool's job:
tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_helm import CHART, Helm, _build, render

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("podmonitors", "prometheusrules")
MONITORING = [
    "--set",
    "monitoring.podMonitor.enabled=true",
    "--set",
    "monitoring.podMonitor.mirror=true",
    "--set",
    "monitoring.podMonitor.labels.release=kube-prometheus-stack",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
    "--set",
    "monitoring.dashboards.enabled=true",
    "--set",
    "monitoring.dashboards.annotations.grafana_folder=Alerts",
]


@pytest.fixture(scope="module")
def monitoring_crds(apiserver: Any) -> Path:
    """The Prometheus Operator's PodMonitor and PrometheusRule CRDs, installed and established."""
    r = subprocess.run(
        ["bash", str(ROOT / "hack" / "prometheus-operator-crds.sh")], capture_output=True, text=True, timeout=600
    )
    if r.returncode != 0:
        pytest.fail(f"hack/prometheus-operator-crds.sh failed ({r.returncode}):\n{r.stderr[-3000:]}")
    crds = Path(r.stdout.strip().splitlines()[-1])
    for kind in KINDS:
        apiserver.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(crds / f"monitoring.coreos.com_{kind}.yaml")
        )
    for kind in KINDS:
        apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{kind}.monitoring.coreos.com")
    return crds


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(_build("build-helm.sh"), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart without its Strimzi dependency declared (test_helm.py's ``chart``: unfetchable here)."""
    dest: Path = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, dest, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return dest


def monitoring_docs(helm: Helm, chart: Path, namespace: str) -> list[dict[str, Any]]:
    docs = render(helm, chart, namespace, *MONITORING)
    return [
        d
        for d in docs
        if d["kind"] in ("PodMonitor", "PrometheusRule") or d["metadata"]["name"].endswith("-dashboards")
    ]


def test_the_servers_schemas_accept_and_keep_every_monitoring_manifest(
    apiserver, monitoring_crds, helm, chart, namespace
):
    docs = monitoring_docs(helm, chart, namespace)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "PodMonitor", "PodMonitor", "PrometheusRule"]
    r = apiserver.kubectl(
        "apply",
        "--server-side",
        "--field-manager=helm",
        "-f",
        "-",
        input="\n---\n".join(map(yaml.safe_dump, docs)),
        check=False,
    )
    assert r.returncode == 0, r.stderr
    for doc in docs:
        got = json.loads(
            apiserver.kubectl("get", doc["kind"], doc["metadata"]["name"], "-n", namespace, "-o", "json").stdout
        )
        body = "data" if doc["kind"] == "ConfigMap" else "spec"
        # a field the CRD's structural schema does not know is pruned silently: all must come back
        assert got[body] == doc[body], f"{doc['kind']} {doc['metadata']['name']}: the server changed or dropped fields"
        if doc["kind"] != "ConfigMap":  # what a Prometheus selects them by
            assert got["metadata"]["labels"].get("release") == "kube-prometheus-stack", got["metadata"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Alerts"}
    assert json.loads(cm["data"]["alertfilter.json"])["title"]


def _apply(apiserver: Any, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    r: subprocess.CompletedProcess[str] = apiserver.kubectl(
        "apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    return r


@pytest.mark.parametrize(
    ("kind", "breaks", "said"),
    [
        ("PodMonitor", lambda d: d["spec"]["podMetricsEndpoints"][0].update(interval="thirty seconds"), "interval"),
        (
            "PodMonitor",
            lambda d: d["spec"]["podMetricsEndpoints"][0]["relabelings"][0].update(action="rewrite"),
            "action",
        ),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].update({"for": "5 minutes"}), "for"),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"), "expr"),
    ],
    ids=["interval", "relabel-action", "for", "no-expr"],
)
def test_a_broken_manifest_is_refused_by_the_schema(
    apiserver, monitoring_crds, helm, chart, namespace, kind, breaks, said
):
    doc = next(d for d in monitoring_docs(helm, chart, namespace) if d["kind"] == kind)
    doc["metadata"]["name"] += "-broken"
    breaks(doc)
    r = _apply(apiserver, doc)
    assert r.returncode != 0 and f'The {kind} "{doc["metadata"]["name"]}" is invalid' in r.stderr, r.stderr
    assert said in r.stderr
