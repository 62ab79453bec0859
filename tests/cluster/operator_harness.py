"""Run the operator as a process against the test API server, and helpers to watch what it does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alertfilter_devstack.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    def __init__(self, apiserver, workdir: Path, **env: str) -> None:
        self.apiserver = apiserver
        self.workdir = workdir
        self.env = {
            **os.environ,
            "KUBECONFIG": str(apiserver.kubeconfig),
            "ALERTFILTER_OPERATOR_LOG_FORMAT": "plain",
            "ALERTFILTER_OPERATOR_HEALTH_PORT": str(free_port()),
            "ALERTFILTER_OPERATOR_WEBHOOK_PORT": str(free_port()),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"operator-{self.starts}.log"

    def start(self) -> OperatorProcess:
        self.starts += 1
        # The child keeps its own copy of the descriptor; ours can close at once.
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "alertfilter_operator"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        port = self.env["ALERTFILTER_OPERATOR_HEALTH_PORT"]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited {self.proc.returncode}:\n{self.log()}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        if self.env.get("ALERTFILTER_OPERATOR_WEBHOOK", "local") != "off":
            wait_for(
                lambda: (
                    self.apiserver.kubectl(
                        "get", "validatingwebhookconfiguration", "alertfilters.alerts.lsst.io", check=False
                    ).returncode
                    == 0
                ),
                30,
                "the webhook configuration",
            )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rss_peak_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def wait_condition(
    apiserver,
    kind: str,
    name: str,
    namespace: str | None,
    type_: str,
    *,
    status: str | None = None,
    reason: str | None = None,
    timeout: float = 60,
) -> Any:
    """The object once its condition ``type_`` has ``status`` and/or ``reason``."""

    def matches() -> Any:
        obj = get(apiserver, kind, name, namespace)
        c = condition(obj, type_)
        ok = (status is None or c.get("status") == status) and (reason is None or c.get("reason") == reason)
        return obj if obj and ok else None

    return wait_for(matches, timeout, f"{kind} {name}: {type_} status={status} reason={reason}")


def get(apiserver, kind: str, name: str, namespace: str | None = None) -> Any:
    args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    r = apiserver.kubectl(*args, check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def apply_json(apiserver, manifest: dict[str, Any], namespace: str | None = None, check: bool = True):
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    return apiserver.kubectl(*args, input=json.dumps(manifest), check=check)


def make_pool(apiserver, capacity: tuple[int, int] = (2, 50), authentication: str = "scram-sha-512") -> tuple[str, str]:
    """A FilterPool with its own Kafka namespace; returns (pool name, kafka namespace)."""
    suffix = uuid.uuid4().hex[:6]
    name, kns = f"pool-{suffix}", f"kafka-{suffix}"
    apiserver.kubectl("create", "namespace", kns)
    apply_json(
        apiserver,
        {
            "apiVersion": "alerts.lsst.io/v1alpha1",
            "kind": "FilterPool",
            "metadata": {"name": name},
            "spec": {
                "nodeSelector": {"alerts.lsst.io/pool": name},
                "tolerations": [
                    {"key": "alerts.lsst.io/pool", "operator": "Equal", "value": name, "effect": "NoSchedule"}
                ],
                "capacity": {"nodes": capacity[0], "filtersPerNode": capacity[1]},
                "kafka": {"namespace": kns, "replicas": 3, "authentication": authentication},
                "mirror": {"sourceBootstrapServers": "central-kafka-bootstrap.kafka.svc:9092", "topic": "alerts"},
            },
        },
    )
    return name, kns


def alertfilter(name: str, source: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "AlertFilter",
        "metadata": {"name": name},
        "spec": {"source": source or (ROOT / "examples" / "filters" / "bright_significant.py").read_text(), **spec},
    }


def replica_set(deployment: str) -> dict[str, Any]:
    """An ownerReference to a ReplicaSet of ``deployment``, for a runner pod a test makes by hand (no
    controller runs here): the operator reads the status of the runner Deployment's pods only."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": f"{deployment}-5d9c",
        "uid": str(uuid.uuid4()),
        "controller": True,
    }


def set_status(apiserver, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
    """What Strimzi or the Deployment controller would do: write the child's status subresource."""
    apiserver.kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
