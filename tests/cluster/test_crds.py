"""The project's CRDs on a real API server: they install, examples apply, bad manifests are rejected."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def apply(apiserver, namespace, manifest: dict[str, Any], check: bool = False, dry_run: bool = True):
    args = ["apply", "-n", namespace, "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return apiserver.kubectl(*args, input=json.dumps(manifest), check=check)


def alertfilter(**spec) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": "f"},
        "spec": {"source": "def f(alert):\n    return True\n", **spec},
    }


def test_crds_are_established(apiserver):
    out = apiserver.kubectl("get", "crd", "-o", "name").stdout
    for crd in (
        "alertfilters.alerts.lsst.io",
        "filterpools.alerts.lsst.io",
        "kafkas.kafka.strimzi.io",
        "kafkatopics.kafka.strimzi.io",
        "kafkausers.kafka.strimzi.io",
        "kafkanodepools.kafka.strimzi.io",
        "kafkamirrormaker2s.kafka.strimzi.io",
    ):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_applies(apiserver, namespace, path):
    r = apiserver.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert r.returncode == 0, r.stderr
    kind = yaml.safe_load(path.read_text())["kind"].lower()
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    got = json.loads(apiserver.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)
    if kind == "alertfilter":
        # the API server filled in the defaults
        assert got["spec"]["visitField"] == "diaSource.visit"
        assert got["spec"]["output"]["maxMessageBytes"] == 4 * 1024 * 1024
        assert got["spec"]["replicas"] == 1
    else:
        assert got["spec"]["kafka"]["storage"]["type"] == "persistent-claim"
        apiserver.kubectl("delete", kind, name, check=False)


def test_zero_cap_is_kept(apiserver, namespace):
    # kubectl apply drops a null, so "no cap" is spelled 0 (null is accepted too, by create/replace)
    r = apply(apiserver, namespace, alertfilter(maxAlertsPerVisit=0), dry_run=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(apiserver.kubectl("get", "alertfilter", "f", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["maxAlertsPerVisit"] == 0


def test_explain_shows_the_field_descriptions(apiserver):
    out = " ".join(apiserver.kubectl("explain", "alertfilter.spec").stdout.split())
    assert "maxAlertsPerVisit <integer>" in out and "original design's figure" in out
    out = " ".join(apiserver.kubectl("explain", "alertfilter.spec.output.retentionMs").stdout.split())
    assert "How long accepted alerts are kept" in out
    out = apiserver.kubectl("explain", "filterpool.spec.mirror").stdout
    assert "sourceBootstrapServers" in out


@pytest.mark.parametrize(
    ("spec", "field_words"),
    [
        ({"maxAlertsPerVisit": -1}, "spec.maxAlertsPerVisit"),
        ({"maxAlertsPerVisit": "twenty"}, "spec.maxAlertsPerVisit"),
        ({"replicas": "two"}, "spec.replicas"),
        ({"pool": "Pool_A"}, "spec.pool"),
        ({"pool": "a" * 64}, "spec.pool"),
        ({"visitField": "diaSource..visit"}, "spec.visitField"),
        ({"output": {"partitions": 0}}, "spec.output.partitions"),
        ({"output": {"topic": "bad topic!"}}, "spec.output.topic"),
        ({"filterTimeoutSeconds": 0}, "spec.filterTimeoutSeconds"),
        ({"unknownField": 1}, "unknownField"),
        (
            {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
            "limits.memory must be at least requests.memory",
        ),
        ({"entrypoint": "Missing"}, "spec.entrypoint must name a class or function defined in spec.source"),
        # every spec the schema admits must run: these would not (issue #12, findings 4, 6-8)
        ({"replicas": 0}, "spec.replicas"),
        ({"output": {"topic": ".."}}, "'.' and '..' are not topic names"),
        ({"output": {"topic": "t" * 239}}, "spec.output.topic"),  # its dead-letter topic would be 250
        ({"filterTimeoutSeconds": 60.5}, "spec.filterTimeoutSeconds"),
        ({"source": "def f(alert):\n    return True\n# " + "\u00e9" * 70_000}, "at most 131072 bytes"),
    ],
)
def test_invalid_alertfilters_are_rejected_naming_the_field(apiserver, namespace, spec, field_words):
    r = apply(apiserver, namespace, alertfilter(**spec))
    assert r.returncode != 0
    assert field_words in r.stderr, r.stderr


def test_missing_source_is_rejected(apiserver, namespace):
    m = alertfilter()
    del m["spec"]["source"]
    r = apply(apiserver, namespace, m)
    assert r.returncode != 0 and "spec.source: Required value" in r.stderr


def test_a_filter_name_must_be_a_dns_label(apiserver, namespace):
    # names with '.' once shared children with their '-' twins (d.x and d-x): they are refused now
    m = alertfilter()
    m["metadata"]["name"] = "d.x"
    r = apply(apiserver, namespace, m)
    assert r.returncode != 0 and "metadata.name" in r.stderr, r.stderr


def test_the_longest_legal_topic_and_a_source_of_any_unicode_are_admitted(apiserver, namespace):
    source = "def f(alert):\n    return True  # \U0001f52d \u00e9\n"
    assert apply(apiserver, namespace, alertfilter(source=source, output={"topic": "t" * 238})).returncode == 0


def test_the_output_topic_cannot_change(apiserver, namespace):
    # a renamed topic would leave the old one and its data behind, owned by nobody
    assert apply(apiserver, namespace, alertfilter(output={"topic": "t-one"}), dry_run=False).returncode == 0
    r = apply(apiserver, namespace, alertfilter(output={"topic": "t-two"}))
    assert r.returncode != 0 and "spec.output.topic cannot change" in r.stderr, r.stderr
    r = apply(apiserver, namespace, alertfilter(output={}))
    assert r.returncode != 0 and "spec.output.topic cannot change" in r.stderr, r.stderr


def test_a_mistyped_pool_can_be_corrected(apiserver, namespace):
    # the operator refuses a move once the filter runs somewhere (status.pool); the schema does not
    assert apply(apiserver, namespace, alertfilter(pool="pool-typo"), dry_run=False).returncode == 0
    assert apply(apiserver, namespace, alertfilter(pool="pool-a")).returncode == 0


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"nodeSelector": {}}, "spec.nodeSelector"),
        ({"capacity": {"nodes": 0}}, "spec.capacity.nodes"),
        ({"kafka": {"storage": {"type": "tape"}}}, "spec.kafka.storage.type"),
        ({"kafka": {"storage": {"type": "persistent-claim", "size": "lots"}}}, "spec.kafka.storage.size"),
    ],
)
def test_invalid_filterpools_are_rejected(apiserver, namespace, patch, words):
    pool = yaml.safe_load((ROOT / "examples" / "filterpool.yaml").read_text())
    pool["metadata"]["name"] = f"p-{namespace}"
    pool["spec"].update(patch)
    r = apiserver.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pool), check=False)
    assert r.returncode != 0 and words in r.stderr, r.stderr


def test_printer_columns(apiserver, namespace):
    apply(apiserver, namespace, alertfilter(), dry_run=False, check=True)
    out = apiserver.kubectl("get", "alertfilters", "-n", namespace).stdout
    header = out.split("\n")[0]
    assert header.split()[:4] == ["NAME", "READY", "POOL", "TOPIC"] and header.split()[-1] == "AGE"
    assert " LAG " in header and " LAST ACCEPTED " in header  # status.lag, status.lastAcceptedTime
    assert "f" in apiserver.kubectl("get", "af", "-n", namespace, "-o", "name").stdout


def test_strimzi_schemas_validate_what_we_write(apiserver, namespace):
    bad_topic = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "x"},
        "spec": {"partitions": "many"},
    }
    r = apply(apiserver, namespace, bad_topic)
    assert r.returncode != 0 and "spec.partitions" in r.stderr


def test_control_plane_restarts_without_leaking_processes_or_ports(tmp_path):
    from alertfilter_devstack.controlplane import ControlPlane
    from alertfilter_devstack.procs import port_open

    pids, ports = [], []
    for i in range(3):
        with ControlPlane(tmp_path / f"cp{i}") as cp:
            assert cp.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
            pids += [p.pid for p in cp.procs.values()]
            ports.append(cp.api_port)
    for pid in pids:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, (
            f"process {pid} left behind"
        )
    assert not any(port_open(p) for p in ports)
