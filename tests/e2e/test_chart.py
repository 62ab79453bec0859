"""The chart as users get it, on the kind cluster: with its Strimzi dependency in charts/
(hack/chart-deps.sh), rendered with strimzi.enabled=true, every object is accepted by the API
server (a server-side dry run: Strimzi's operator images cannot be pulled here)."""

from __future__ import annotations

import subprocess

from alertfilter_devstack.kind import hack

from .conftest import ROOT


def test_the_chart_with_strimzi_enabled_passes_a_server_side_dry_run(devstack):
    _, cluster, _ = devstack
    helm = hack("build-helm.sh")
    hack("chart-deps.sh")
    rendered = subprocess.run([helm, "template", "alert-filter", str(ROOT / "helm" / "alert-filter-operator"),
                               "--namespace", "kafka", "--include-crds", "--set", "strimzi.enabled=true"],
                              capture_output=True, text=True, check=True).stdout
    kinds = {line.split(":", 1)[1].strip() for line in rendered.splitlines() if line.startswith("kind:")}
    assert {"Deployment", "Kafka", "KafkaNodePool", "KafkaTopic", "CustomResourceDefinition"} <= kinds
    r = cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts",
                        "--field-manager=e2e-dry-run", "-f", "-", input=rendered)
    assert r.returncode == 0, r.stderr
    # Strimzi's own cluster operator Deployment is among what the API server accepted
    assert "deployment.apps/strimzi-cluster-operator" in r.stdout, r.stdout
