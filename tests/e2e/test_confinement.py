"""What a filter's code can reach on a real kubelet: nothing but its Kafka bootstrap (NetworkPolicy),
no write to its root filesystem, no root user, no service-account token.

A probing filter runs each attempt once, from inside the filter process of a real runner pod, and
prints the results on its stderr, which is the pod's log (``kubectl logs``). The same probe in a
plain pod of the same namespace without the filter's NetworkPolicy shows that each target does
answer when nothing blocks it, so a refusal is the policy's doing. On the former process nodes
every one of these tests failed: a filter was a root process on the host, with its network.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from .conftest import apply_filter, produce_batch, runner_pods, wait_for

PROBE = r'''
import json, os, socket, sys

TARGETS = __TARGETS__
_done = False


def _connect(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        return "connected"
    except OSError as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    finally:
        s.close()


def _write(path):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        return "written"
    except OSError as exc:
        return f"refused: {type(exc).__name__}: {exc}"


def _probe():
    out = {name: _connect(host, port) for name, (host, port) in TARGETS.items()}
    out["write /opt/alertfilter"] = _write("/opt/alertfilter/probe")
    out["write /etc"] = _write("/etc/probe")
    out["uid"] = os.getuid()
    out["euid"] = os.geteuid()
    out["token"] = os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
    return out


def probe_everything(alert):
    global _done
    if not _done:
        _done = True
        print("PROBE " + json.dumps(_probe()), file=sys.stderr, flush=True)
    return False
'''


def _targets(st, cluster) -> dict[str, tuple[str, int]]:
    """name → (address, port): the API server (Service and endpoint), another pod (the operator's
    webhook), the host (the pool broker's own listener on the kind gateway, for its broker pods only),
    and the filter's Kafka bootstrap."""
    api = cluster.get_json("service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
    endpoint = cluster.get_json("endpoints", "kubernetes", "-n", "default")["subsets"][0]
    op = cluster.get_json("pods", "-n", "kafka", "-l", "app.kubernetes.io/name=alert-filter-operator")["items"][0]
    gw = st["kafka_pool"]["pod_target"].split(":")[0]
    return {"apiserver service": (api, 443),
            "apiserver endpoint": (endpoint["addresses"][0]["ip"], endpoint["ports"][0]["port"]),
            "another pod": (op["status"]["podIP"], 9443),
            "host": (gw, int(st["kafka_pool"]["pod_target"].rsplit(":", 1)[1])),
            "kafka bootstrap": ("pool-a-kafka-kafka-bootstrap.kafka.svc", 9092)}


def _source(targets) -> str:
    return PROBE.replace("__TARGETS__", repr(targets))


def _probe_line(text: str) -> dict | None:
    m = re.search(r"^PROBE (\{.*\})$", text, re.MULTILINE)
    return json.loads(m.group(1)) if m else None


@pytest.fixture(scope="module")
def probes(devstack, alerts_dir):
    """(from the filter, from a plain pod): each probe's result."""
    from alertfilter_devstack.stack import RESTRICTED

    st, cluster, _ = devstack
    ns = "e2e-confinement"
    cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=120s")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": RESTRICTED}}))
    targets = _targets(st, cluster)
    source = _source(targets)
    # the control: the same code in a restricted plain pod of this namespace, no NetworkPolicy selects it
    control = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe-control"}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "nodeSelector": {"alerts.lsst.io/role": "consumers"},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "probe", "image": "alertfilter-runner:0.1.0", "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-c", source + "\nprobe_everything(None)\n"],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(control))
    apply_filter(cluster, ns, "probe", source, filterTimeoutSeconds=60, startFrom="earliest")
    pod = wait_for(lambda: runner_pods(cluster, ns, "probe"), 120, "the probe's runner pod")[0]["metadata"]["name"]
    # a filter is called once an alert comes: from its input's beginning (startFrom), and new alerts
    # in case earlier tests left none on the topic it reads (the pool's lean topic: it reads no cutout)
    produce_batch(st, alerts_dir, copies=1, first_visit=7_000 + int(time.time()) % 1_000_000)
    got = wait_for(lambda: _probe_line(cluster.kubectl("logs", "-n", ns, pod, check=False).stdout), 240,
                   "the probe's result in the runner's log (kubectl logs)")
    ctl = wait_for(lambda: _probe_line(cluster.kubectl("logs", "-n", ns, "probe-control", check=False).stdout), 120,
                   "the control pod's result")
    yield got, ctl
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize("target", ["apiserver service", "apiserver endpoint", "another pod", "host"])
def test_a_filter_cannot_connect_anywhere_but_its_kafka(probes, target):
    got, ctl = probes
    assert ctl[target] == "connected", f"the control pod could not reach {target} either: {ctl[target]}"
    assert got[target].startswith("refused"), f"the filter reached {target}"


def test_a_filter_reaches_its_kafka_bootstrap(probes):
    got, _ = probes
    assert got["kafka bootstrap"] == "connected"


def test_a_filter_cannot_write_its_root_filesystem(probes):
    got, _ = probes
    assert "Read-only file system" in got["write /opt/alertfilter"]
    assert got["write /etc"].startswith("refused")


def test_a_filter_runs_as_non_root_without_a_service_account_token(probes):
    got, _ = probes
    assert got["uid"] != 0 and got["euid"] != 0
    assert got["token"] is False
