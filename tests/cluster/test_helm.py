"""The Helm chart (helm/alert-filter-operator) with a helm built from its Go module, against the
real test API server with Strimzi's CRDs and ours installed.

- helm lint is clean; helm template renders with the default values and every ci/*.yaml file;
  the rendered manifests pass a server-side dry-run apply (Strimzi's schemas validate the Kafka
  resources); wrong values are rejected with a message naming them.
- The chart's RBAC is enough, and only that: the real operator runs with the token of the chart's
  ServiceAccount, in both modes (all namespaces, and namespaced Roles), takes a FilterPool and an
  AlertFilter to Ready and deletes them, without a single permission denied.
- The chart's crds/ are the top-level crds/, byte for byte.
- The workflow files, Dockerfiles and shell scripts pass actionlint, hadolint and shellcheck.

The Strimzi operator chart is a declared dependency that cannot be fetched here (no network);
lint, template and install run on a copy of the chart without that declaration, which is what the
chart is with strimzi.enabled=false. The shipped chart's lint is checked to miss nothing else.

helm and the linters are built (and cached) by hack/build-helm.sh and hack/build-linters.sh; a
build that fails fails the tests, never skips them.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertfilter import __version__ as RUNTIME_VERSION
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.naming import kafka_user_name, runner_name

from .operator_harness import OperatorProcess, alertfilter, apply_json, condition, get, set_status, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "alert-filter-operator"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
#: The version of the operator package in this checkout: the chart's version and appVersion, and
#: the default tag of both images.
APP_VERSION = importlib.metadata.version("alertfilter-operator")
VALUES_CASES = [None, *CI_VALUES]
WEBHOOK_CONFIG = "alertfilters.alerts.lsst.io"


def _build(script: str) -> Path:
    r = subprocess.run(["bash", str(ROOT / "hack" / script)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.fail(f"hack/{script} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return Path(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    path = _build("build-helm.sh")
    if not os.access(path, os.X_OK):
        pytest.fail(f"hack/build-helm.sh printed {path}, which is not an executable")
    return path


@pytest.fixture(scope="session")
def linters() -> Path:
    return _build("build-linters.sh")


class Helm:
    """helm with its caches and configuration in a temporary folder (never the user's)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(
        self, *args: str, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), *args] + ([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
        return r


@pytest.fixture(scope="module")
def helm(helm_bin, tmp_path_factory) -> Helm:
    return Helm(helm_bin, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """The chart without its (unfetchable) Strimzi dependency declared: the chart as it is with
    strimzi.enabled=false. Everything else is the shipped chart, file for file."""
    dest: Path = tmp_path_factory.mktemp("chart") / CHART.name
    # charts/ and Chart.lock exist only after `helm dependency build` (on a connected machine)
    shutil.copytree(CHART, dest, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    assert [d["name"] for d in meta.pop("dependencies")] == ["strimzi-kafka-operator"]
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return dest


def values_args(values: Path | None) -> list[str]:
    return ["-f", str(values)] if values else []


def render(helm: Helm, chart: Path, namespace: str, *args: str, release: str = "afo") -> list[dict[str, Any]]:
    out = helm("template", release, str(chart), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind}s rendered"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def ensure_namespaces(apiserver, names) -> None:
    for ns in sorted(set(names)):
        if apiserver.kubectl("get", "namespace", ns, check=False).returncode != 0:
            apiserver.kubectl("create", "namespace", ns)


def case_id(values: Path | None) -> str:
    return values.name if values else "defaults"


# --- the chart's files -------------------------------------------------------------------------


def test_chart_metadata_declares_the_strimzi_dependency():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"]) == ("v2", "alert-filter-operator")
    # the chart installs the operator and runner of this checkout: one version for all three
    assert meta["version"] == meta["appVersion"] == APP_VERSION == RUNTIME_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", APP_VERSION)
    (dep,) = meta["dependencies"]
    assert dep == {
        "name": "strimzi-kafka-operator",
        "alias": "strimzi",
        "version": "1.2.0",
        "repository": "oci://quay.io/strimzi-helm",
        "condition": "strimzi.enabled",
    }
    assert yaml.safe_load((CHART / "values.yaml").read_text())["strimzi"]["enabled"] is False


def test_chart_crds_are_the_generated_crds_byte_for_byte():
    top = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert top and sorted(p.name for p in (CHART / "crds").glob("*")) == top, (
        "helm/alert-filter-operator/crds/ must hold exactly the files of crds/ (cp crds/*.yaml helm/alert-filter-operator/crds/)"
    )
    for name in top:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"helm/alert-filter-operator/crds/{name} differs from crds/{name}: copy it again"
        )


def test_values_schema_is_strict_and_describes_every_top_level_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), "a top-level value the schema does not describe"


# --- lint and template -------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_CASES, ids=case_id)
def test_lint_is_clean(helm, chart, values):
    r = helm("lint", "--strict", str(chart), *values_args(values), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    problems = [line for line in r.stdout.splitlines() if line.startswith(("[WARNING]", "[ERROR]"))]
    assert not problems, r.stdout


def test_lint_of_the_shipped_chart_misses_only_the_unfetched_dependency(helm):
    r = helm("lint", str(CHART), check=False)
    problems = [line for line in r.stdout.splitlines() if line.startswith(("[WARNING]", "[ERROR]"))]
    if list((CHART / "charts").glob("strimzi-kafka-operator-*.tgz")):  # after `helm dependency build`
        assert r.returncode == 0 and not problems, r.stdout
    else:
        assert problems == [
            f"[WARNING] {CHART}: chart directory is missing these dependencies: strimzi-kafka-operator"
        ], r.stdout


@pytest.mark.parametrize("values", VALUES_CASES, ids=case_id)
def test_template_renders(helm, chart, values):
    docs = render(helm, chart, "alerts", *values_args(values))
    vals = yaml.safe_load(values.read_text()) if values else {}
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= kinds
    central = (vals.get("centralKafka") or {}).get("enabled", True)
    assert ({"Kafka", "KafkaNodePool", "KafkaTopic"} <= kinds) == central
    for d in docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "alert-filter"


def test_operator_deployment(helm, chart):
    docs = render(helm, chart, "alerts")
    dep = one(docs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (ctr,) = pod["containers"]
    sc = ctr["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert ctr["image"] == f"alertfilter-operator:{APP_VERSION}"
    assert ctr["resources"]["requests"] and ctr["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"} and ports["health"] == 8081
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    env = env_of(dep)
    assert env["ALERTFILTER_OPERATOR_RUNNER_IMAGE"] == f"alertfilter-runner:{APP_VERSION}"
    assert env["ALERTFILTER_OPERATOR_WEBHOOK"] == "service"
    assert "ALERTFILTER_OPERATOR_NAMESPACES" not in env
    # the operator reads these variables as the chart means them
    cfg = OperatorConfig.from_env(env)
    assert (cfg.webhook, cfg.webhook_port, cfg.health_port) == ("service", ports["webhook"], ports["health"])
    # the Service the operator announces in its webhook configuration exists, with the port it announces
    assert cfg.webhook_service is not None
    svc_ns, svc_name = cfg.webhook_service.split("/")
    svc = one(docs, "Service")
    assert (svc["metadata"]["namespace"], svc["metadata"]["name"]) == (svc_ns, svc_name) == ("alerts", svc_name)
    assert {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]} == {443: "webhook", cfg.webhook_port: "webhook"}
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()


def _merged_values(values: Path | None) -> dict[str, Any]:
    """values.yaml with a values file's ``operator`` and ``runner`` sections laid over it, key by key."""
    merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    extra = yaml.safe_load(values.read_text()) if values else {}
    for section in ("operator", "runner"):
        for key, value in (extra.get(section) or {}).items():
            base = merged[section].get(key)
            merged[section][key] = {**base, **value} if isinstance(base, dict) else value
    return merged


def _image_reference(image: dict[str, str]) -> str:
    """``repository@digest`` when a digest is set, else ``repository:tag`` (default tag: the appVersion)."""
    if image.get("digest"):
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image.get('tag') or APP_VERSION}"


@pytest.mark.parametrize("values", VALUES_CASES, ids=case_id)
def test_the_operator_runs_with_the_settings_its_values_ask_for(helm, chart, values):
    dep = one(render(helm, chart, "alerts", *values_args(values)), "Deployment")
    env = env_of(dep)
    cfg = OperatorConfig.from_env({k: v for k, v in env.items() if v is not None})
    vals = _merged_values(values)
    op, runner = vals["operator"], vals["runner"]
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    assert ctr["image"] == _image_reference(op["image"])
    assert cfg.runner_image == _image_reference(runner["image"])
    assert cfg.runner_pull_policy == runner["image"]["pullPolicy"]
    assert (cfg.schema_registry, cfg.schema_dir) == (runner["schemaRegistry"] or None, runner["schemaDir"] or None)
    assert cfg.resync_seconds == op["resyncSeconds"]
    # all namespaces, or the filters' namespaces and the Kafka namespaces (Strimzi's statuses are read there)
    watched = (*op["watchNamespaces"], *op["kafkaNamespaces"]) if op["watchNamespaces"] else ()
    assert cfg.namespaces == watched
    assert cfg.webhook == ("service" if op["webhook"]["enabled"] else "off")
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert cfg.health_port == op["healthPort"] == ports["health"]
    assert env["ALERTFILTER_OPERATOR_LOG_FORMAT"] == op["logFormat"]


def test_central_kafka(helm, chart):
    docs = render(helm, chart, "kafka")
    kafka, pool, topic = one(docs, "Kafka"), one(docs, "KafkaNodePool"), one(docs, "KafkaTopic")
    assert kafka["apiVersion"] == pool["apiVersion"] == topic["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["metadata"]["name"] == "central" and kafka["metadata"]["namespace"] == "kafka"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "central"
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    terms = pool["spec"]["template"]["pod"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "alerts.lsst.io/role", "operator": "In", "values": ["central"]}]}
    ]
    (volume,) = pool["spec"]["storage"]["volumes"]
    assert volume["type"] == "persistent-claim" and volume["kraftMetadata"] == "shared"
    # the examples' FilterPool mirrors exactly this: central-kafka-bootstrap.kafka.svc:9092, topic alerts
    example = yaml.safe_load((ROOT / "examples" / "filterpool.yaml").read_text())["spec"]["mirror"]
    plain = next(lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["name"] == "plain")
    assert example["sourceBootstrapServers"] == f"central-kafka-bootstrap.kafka.svc:{plain['port']}"
    assert example["topic"] == topic["metadata"]["name"] == "alerts"
    cfg = topic["spec"]["config"]
    # Rubin alerts are 50-250 KB; the topic and the brokers take far more
    assert cfg["max.message.bytes"] == 10 * 1024 * 1024 > 250_000
    assert kafka["spec"]["kafka"]["config"]["message.max.bytes"] >= cfg["max.message.bytes"]
    assert kafka["spec"]["kafka"]["config"]["replica.fetch.max.bytes"] >= cfg["max.message.bytes"]
    assert cfg["retention.ms"] > 0 and cfg["compression.type"] == "producer"
    assert topic["spec"]["replicas"] == 3 and cfg["min.insync.replicas"] == 2
    assert not by_kind(docs, "KafkaUser")


def test_kafka_users_get_least_privilege_acls(helm, chart):
    docs = render(helm, chart, "kafka", "-f", str(CHART / "ci" / "namespaced-values.yaml"))
    users = {u["metadata"]["name"]: u for u in by_kind(docs, "KafkaUser")}
    assert set(users) == {"alert-producer", "community-broker-a", "community-broker-b"}
    acls = {
        n: {
            (a["resource"]["type"], a["resource"].get("name"), a["resource"].get("patternType")): sorted(
                a["operations"]
            )
            for a in u["spec"]["authorization"]["acls"]
        }
        for n, u in users.items()
    }
    assert acls["alert-producer"] == {("topic", "alerts", "literal"): ["Describe", "DescribeConfigs", "Write"]}
    assert acls["community-broker-b"] == {
        ("topic", "alerts", "literal"): ["Describe", "DescribeConfigs", "Read"],
        ("group", "broker-b-", "prefix"): ["Describe", "Read"],
    }
    assert ("group", "community-broker-a", "prefix") in acls["community-broker-a"]
    kafka = one(docs, "Kafka")["spec"]["kafka"]
    assert [lst["name"] for lst in kafka["listeners"]] == ["plain", "scram"]
    assert kafka["listeners"][1]["authentication"] == {"type": "scram-sha-512"}
    assert kafka["authorization"]["type"] == "simple"


def test_namespaced_mode_has_no_cluster_wide_writes(helm, chart):
    docs = render(helm, chart, "alerts", "-f", str(CHART / "ci" / "namespaced-values.yaml"))
    (cr,) = by_kind(docs, "ClusterRole")
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    cluster_writes = sorted((tuple(r["resources"]), v) for r in cr["rules"] for v in r["verbs"] if v in writes)
    # only what is cluster-scoped by nature: FilterPools and kopf's webhook configuration
    webhooks = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")
    assert cluster_writes == [
        (("filterpools",), "patch"),
        (("filterpools/status",), "patch"),
        (webhooks, "create"),
        (webhooks, "patch"),
    ]
    (named,) = [r for r in cr["rules"] if "patch" in r["verbs"] and r["resources"] == list(webhooks)]
    assert named["resourceNames"] == [WEBHOOK_CONFIG]
    assert not any("secrets" in r["resources"] for r in cr["rules"])
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"].rsplit("-", 1)[1]) for r in by_kind(docs, "Role")}
    assert roles == {
        ("alerts-team-a", "filters"),
        ("alerts-team-b", "filters"),
        ("alerts-kafka", "filters"),
        ("alerts-kafka", "kafka"),
        ("alerts", "events"),
        ("default", "events"),
    }
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(docs, "RoleBinding")}
    assert bindings == {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(docs, "Role")}
    env = env_of(one(docs, "Deployment"))
    assert env["ALERTFILTER_OPERATOR_NAMESPACES"] == "alerts-team-a,alerts-team-b,alerts-kafka"


WRONG_VALUES = [
    ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
    ({"operator": {"replicas": 2}}, "at '/operator/replicas'"),
    ({"operator": {"replicaz": 1}}, "additional properties 'replicaz' not allowed"),
    ({"centralKafka": {"topic": {"compressionType": "brotli"}}}, "at '/centralKafka/topic/compressionType'"),
    ({"centralKafka": {"topic": {"maxMessageBytes": 100_000}}}, "at '/centralKafka/topic/maxMessageBytes'"),
    ({"centralKafka": {"storage": {"size": "lots"}}}, "at '/centralKafka/storage/size'"),
    ({"operator": {"watchNamespaces": ["Team_A"]}}, "at '/operator/watchNamespaces/0'"),
    ({"runner": {"image": {"pullPolicy": "Sometimes"}}}, "at '/runner/image/pullPolicy'"),
    ({"centralKafka": {"replicas": 1}}, "centralKafka.topic.replicas (3) cannot exceed centralKafka.replicas (1)"),
    (
        {"operator": {"watchNamespaces": ["team-a"], "kafkaNamespaces": []}},
        "operator.kafkaNamespaces: list the namespaces",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"), WRONG_VALUES, ids=[json.dumps(v, separators=(",", ":")) for v, _ in WRONG_VALUES]
)
def test_wrong_values_are_rejected_with_a_message_naming_them(helm, chart, tmp_path, values, message):
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    r = helm("template", "afo", str(chart), "-f", str(f), check=False)
    assert r.returncode != 0, f"accepted {values}"
    assert message in r.stderr, r.stderr


# --- against the API server ----------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_CASES, ids=case_id)
def test_rendered_manifests_pass_server_side_dry_run(apiserver, helm, chart, values):
    ns = f"helm-{uuid.uuid4().hex[:6]}"
    docs = render(helm, chart, ns, *values_args(values), release=f"dry-{ns}")
    ensure_namespaces(apiserver, [ns, *(d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace"))])
    r = apiserver.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == len(docs), r.stdout


def test_helm_install_and_uninstall(apiserver, helm, chart):
    """A real install (CRDs already there: helm leaves them), the NOTES, and an uninstall."""
    ns = f"helm-{uuid.uuid4().hex[:6]}"
    ensure_namespaces(apiserver, [ns])
    r = helm("install", f"r-{ns}", str(chart), "--namespace", ns, kubeconfig=apiserver.kubeconfig)
    assert "kubectl get alertfilters" in r.stdout and "kubectl apply -f examples/filterpool.yaml" in r.stdout
    assert "kafka/central --for=condition=Ready" in r.stdout
    assert get(apiserver, "kafka", "central", ns) and get(apiserver, "kafkatopic", "alerts", ns)
    assert get(apiserver, "deployment", f"r-{ns}-alert-filter-operator", ns)
    status = json.loads(helm("status", f"r-{ns}", "-n", ns, "-o", "json", kubeconfig=apiserver.kubeconfig).stdout)
    assert status["info"]["status"] == "deployed"
    helm("uninstall", f"r-{ns}", "-n", ns, "--wait", "--timeout", "60s", kubeconfig=apiserver.kubeconfig)
    assert get(apiserver, "kafka", "central", ns) is None
    assert get(apiserver, "clusterrole", f"r-{ns}-alert-filter-operator") is None
    # helm keeps CRDs on uninstall (AlertFilters would go with them)
    assert get(apiserver, "crd", "alertfilters.alerts.lsst.io")


# --- the chart's RBAC, exercised by the real operator ---------------------------------------------


def service_account_kubeconfig(apiserver, namespace: str, service_account: str, path: Path) -> Path:
    token = apiserver.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
    cfg = json.loads(Path(apiserver.kubeconfig).read_text())
    cfg["users"] = [{"name": "operator", "user": {"token": token}}]
    cfg["contexts"] = [{"name": "operator", "context": {"cluster": cfg["clusters"][0]["name"], "user": "operator"}}]
    cfg["current-context"] = "operator"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def finish_terminating_namespaces(apiserver) -> None:
    """Remove the AlertFilters left in namespaces that earlier tests deleted: without a namespace
    controller here they stay forever, and an operator serving all namespaces would place them in
    this test's pool (which then refuses deletion while they run in it)."""
    namespaces = json.loads(apiserver.kubectl("get", "namespaces", "-o", "json").stdout)["items"]
    terminating = {n["metadata"]["name"] for n in namespaces if n.get("status", {}).get("phase") == "Terminating"}
    for af in json.loads(apiserver.kubectl("get", "alertfilters", "-A", "-o", "json").stdout)["items"]:
        ns, name = af["metadata"]["namespace"], af["metadata"]["name"]
        if ns in terminating:
            apiserver.kubectl(
                "patch",
                "alertfilter",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
            apiserver.kubectl(
                "delete", "alertfilter", name, "-n", ns, "--wait=false", "--ignore-not-found", check=False
            )


DENIED = re.compile(
    r'cannot \w+ resource|Not enough (RBAC )?permissions|forbidden: User "system:serviceaccount', re.IGNORECASE
)


@pytest.mark.parametrize("mode", ["all-namespaces", "namespaced"])
def test_the_operator_works_with_the_charts_rbac_and_nothing_more(apiserver, helm, chart, tmp_path, mode):
    finish_terminating_namespaces(apiserver)
    sfx = uuid.uuid4().hex[:6]
    rel_ns, filters_ns, kafka_ns = f"afo-{sfx}", f"filters-{sfx}", f"kafka-{sfx}"
    ensure_namespaces(apiserver, [rel_ns, filters_ns, kafka_ns])
    release = f"rbac-{sfx}"
    args = ["--namespace", rel_ns, "--set", "centralKafka.enabled=false"]
    if mode == "namespaced":
        args += [
            "--set",
            f"operator.watchNamespaces={{{filters_ns}}}",
            "--set",
            f"operator.kafkaNamespaces={{{kafka_ns}}}",
        ]
    helm("install", release, str(chart), *args, kubeconfig=apiserver.kubeconfig)
    dep = get(apiserver, "deployment", f"{release}-alert-filter-operator", rel_ns)
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    env = env_of(dep)
    kubeconfig = service_account_kubeconfig(apiserver, rel_ns, sa, tmp_path / "kubeconfig")

    pool = f"pool-{sfx}"
    apply_json(
        apiserver,
        {
            "apiVersion": "alerts.lsst.io/v1alpha1",
            "kind": "FilterPool",
            "metadata": {"name": pool},
            "spec": {
                "nodeSelector": {"alerts.lsst.io/pool": pool},
                "kafka": {"namespace": kafka_ns, "replicas": 1},
                "mirror": {"sourceBootstrapServers": "central-kafka-bootstrap.kafka.svc:9092"},
            },
        },
    )
    # what Strimzi's User Operator would make for the runner's KafkaUser: the operator copies it
    kuser = kafka_user_name(filters_ns, "rbac")
    apiserver.kubectl("create", "secret", "generic", kuser, "-n", kafka_ns, "--from-literal=password=s3cret")
    # the webhook is served locally here (no Service network): the API server is on this host
    apiserver.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--ignore-not-found")
    op_env = {k: v for k, v in env.items() if v is not None and not k.endswith(("_PORT", "_WEBHOOK_SERVICE"))}
    op_env.update(
        KUBECONFIG=str(kubeconfig), ALERTFILTER_OPERATOR_WEBHOOK="local", ALERTFILTER_OPERATOR_LOG_FORMAT="plain"
    )
    op = OperatorProcess(apiserver, tmp_path, **op_env).start()
    try:
        vwc = get(apiserver, "validatingwebhookconfiguration", WEBHOOK_CONFIG)
        assert vwc and vwc["webhooks"], "the operator did not write its webhook configuration"
        apply_json(apiserver, alertfilter("rbac", pool=pool), filters_ns)
        runner = runner_name("rbac")
        wait_for(
            lambda: all(
                get(apiserver, k, n, ns)
                for k, n, ns in [
                    ("configmap", runner, filters_ns),
                    ("deployment", runner, filters_ns),
                    ("networkpolicy", runner, filters_ns),
                    ("secret", f"{runner}-kafka", filters_ns),
                    ("kafkatopic", f"{kuser}.output", kafka_ns),
                    ("kafkatopic", f"{kuser}.deadletter", kafka_ns),
                    ("kafkauser", kuser, kafka_ns),
                    ("kafka", f"{pool}-kafka", kafka_ns),
                    ("kafkanodepool", f"{pool}-kafka-nodes", kafka_ns),
                    ("kafkamirrormaker2", f"{pool}-kafka-mirror", kafka_ns),
                    ("kafkatopic", f"{pool}-kafka-lean-topic", kafka_ns),  # the pool's lean stream
                    ("kafkauser", f"{pool}-kafka-lean", kafka_ns),
                    ("deployment", f"{pool}-kafka-lean", kafka_ns),
                ]
            ),
            90,
            "every child\n" + op.log(),
        )
        # Strimzi and the Deployment controller report ready: the operator sees it through its watches
        ready = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        for topic in (f"{kuser}.output", f"{kuser}.deadletter"):
            set_status(apiserver, "kafkatopic", topic, kafka_ns, ready)
        gen = get(apiserver, "deployment", runner, filters_ns)["metadata"]["generation"]
        set_status(
            apiserver,
            "deployment",
            runner,
            filters_ns,
            {
                "observedGeneration": gen,
                "replicas": 1,
                "availableReplicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
            },
        )
        wait_for(
            lambda: condition(get(apiserver, "alertfilter", "rbac", filters_ns), "Ready").get("status") == "True",
            60,
            "the AlertFilter to be Ready\n" + op.log(),
        )
        set_status(apiserver, "kafka", f"{pool}-kafka", kafka_ns, ready)
        set_status(apiserver, "kafkamirrormaker2", f"{pool}-kafka-mirror", kafka_ns, ready)
        set_status(apiserver, "kafkatopic", f"{pool}-kafka-lean-topic", kafka_ns, ready)
        lean_gen = get(apiserver, "deployment", f"{pool}-kafka-lean", kafka_ns)["metadata"]["generation"]
        available = {"observedGeneration": lean_gen, "replicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
        available["readyReplicas"] = 1
        set_status(apiserver, "deployment", f"{pool}-kafka-lean", kafka_ns, available)
        wait_for(
            lambda: condition(get(apiserver, "filterpool", pool), "Ready").get("status") == "True",
            60,
            "the FilterPool to be Ready\n" + op.log(),
        )
        assert (
            base64.b64decode(get(apiserver, "secret", f"{runner}-kafka", filters_ns)["data"]["password"]) == b"s3cret"
        )

        # events (best effort in the operator, so checked here): the filter's in its namespace, the pool's in default
        def events(ns: str, name: str) -> list[str]:
            items = json.loads(apiserver.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
            return [e["message"] for e in items if e["involvedObject"]["name"] == name]

        assert any(m.startswith("Ready=True") for m in events(filters_ns, "rbac")), events(filters_ns, "rbac")
        assert any(m.startswith("Ready=True") for m in events("default", pool)), events("default", pool)
        # deletion: the operator finds the Kafka-namespace children by label and removes its finalizer
        apiserver.kubectl("delete", "alertfilter", "rbac", "-n", filters_ns, "--wait=false")
        wait_for(
            lambda: get(apiserver, "alertfilter", "rbac", filters_ns) is None,
            60,
            "the AlertFilter's deletion\n" + op.log(),
        )
        assert (
            get(apiserver, "kafkatopic", kuser, kafka_ns) is None
            and get(apiserver, "kafkauser", kuser, kafka_ns) is None
        )
        assert get(apiserver, "configmap", runner, filters_ns) is None
        apiserver.kubectl("delete", "filterpool", pool, "--wait=false")
        wait_for(lambda: get(apiserver, "filterpool", pool) is None, 60, "the FilterPool's deletion\n" + op.log())
        assert get(apiserver, "kafka", f"{pool}-kafka", kafka_ns) is None
    finally:
        op.stop()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            apiserver.kubectl("delete", kind, WEBHOOK_CONFIG, "--ignore-not-found", check=False)
        apiserver.kubectl("delete", "filterpool", pool, "--ignore-not-found", "--wait=false", check=False)
    log = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("operator-*.log"))
    denied = [line for line in log.splitlines() if DENIED.search(line)]
    assert not denied, "permission denied to the operator:\n" + "\n".join(denied[:20])
    helm("uninstall", release, "-n", rel_ns, kubeconfig=apiserver.kubeconfig)


# --- the kind end-to-end script's manifests ------------------------------------------------------


def test_e2e_kind_manifests_pass_server_side_dry_run(apiserver, tmp_path):
    """hack/e2e-kind.sh cannot run here (no Docker): its data step (simulated alerts, schemas, the
    backtest's expected counts) runs, and everything it would apply besides the chart passes a
    server-side dry run: the kind-sized FilterPool, the example AlertFilters (all but the broken
    one) and the one for simulated alerts, the reader's KafkaUser, the producer pod."""
    env = {
        **os.environ,
        "WORK": str(tmp_path / "e2e"),
        "ALERTFILTER_DATA": str(tmp_path / "no-data"),
        "PYTHON": sys.executable,
        "KAFKA_NS": "kafka",
        "FILTERS_NS": "alerts",
    }
    script = str(ROOT / "hack" / "e2e-kind.sh")
    r = subprocess.run(["bash", script, "data"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    expected = json.loads((tmp_path / "e2e" / "expected.json").read_text())
    assert set(expected) == {
        "bright-significant",
        "known-objects",
        "reliable-i-band",
        "with-cutout",
        "bright-i-simulated",
    }
    assert 0 < expected["bright-i-simulated"]["output"] < expected["bright-i-simulated"]["alerts"]
    assert list((tmp_path / "e2e" / "schemas").glob("*.avsc"))
    r = subprocess.run(["bash", script, "manifests"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert sorted(d["kind"] for d in docs) == ["AlertFilter"] * 5 + ["FilterPool", "KafkaUser", "Pod"]
    ensure_namespaces(apiserver, ["kafka", "alerts"])
    # no controller-manager here to make the namespace's default ServiceAccount the pod needs
    if apiserver.kubectl("get", "serviceaccount", "default", "-n", "kafka", check=False).returncode:
        apiserver.kubectl("create", "serviceaccount", "default", "-n", "kafka")
    # as the script applies them: AlertFilters in FILTERS_NS, the rest in (or naming) KAFKA_NS
    for ns, group in (
        ("kafka", [d for d in docs if d["kind"] != "AlertFilter"]),
        ("alerts", [d for d in docs if d["kind"] == "AlertFilter"]),
    ):
        r = apiserver.kubectl(
            "apply",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": group}),
            check=False,
        )
        assert r.returncode == 0, r.stderr


# --- linters ---------------------------------------------------------------------------------------


def test_workflows_pass_actionlint(linters):
    files = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert {f.name for f in files} >= {"test.yaml", "e2e-kind.yaml"}
    # actionlint runs shellcheck on every `run:` script when shellcheck is on PATH
    env = {**os.environ, "PATH": f"{linters}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(
        [str(linters / "actionlint"), "-no-color", *map(str, files)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", ["runtime/Dockerfile", "operator/Dockerfile"])
def test_dockerfile_passes_hadolint(linters, dockerfile):
    r = subprocess.run([str(linters / "hadolint"), "--no-color", dockerfile], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("dockerfile", "entrypoint"),
    [("runtime/Dockerfile", '["alertfilter"]'), ("operator/Dockerfile", '["python", "-m", "alertfilter_operator"]')],
)
def test_dockerfile_final_stage(dockerfile, entrypoint):
    """What no linter checks: the final stage is the slim base, runs as uid 10001, has no compiler,
    and starts the right program; the build context stays small (its .dockerignore)."""
    text = (ROOT / dockerfile).read_text()
    final = text[text.rindex("\nFROM ") :]
    assert "ARG PYTHON_IMAGE=python:3.11-slim\n" in text and final.startswith("\nFROM ${PYTHON_IMAGE}\n")
    assert "USER 10001:10001" in final and "--uid 10001" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)
    assert f"ENTRYPOINT {entrypoint}" in final
    if dockerfile.startswith("runtime"):
        assert 'CMD ["run"]' in final
    assert "--constraint constraints.txt" in text
    ignore = (ROOT / f"{dockerfile}.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :][:1] == ["!constraints.txt"]


def test_scripts_pass_shellcheck(linters):
    scripts = ["hack/build-helm.sh", "hack/build-linters.sh", "hack/e2e-kind.sh"]
    r = subprocess.run(
        [str(linters / "shellcheck"), "--severity=style", *scripts], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0, r.stdout + r.stderr
