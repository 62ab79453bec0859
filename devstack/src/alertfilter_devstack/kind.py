"""The local stack's Kubernetes: the kind cluster of ``kind-config.yaml``, through the ``hack/`` scripts.

``hack/kind-cluster.sh`` creates or reuses the cluster (node image from ``hack/kind-node-image.sh``),
``hack/build-images.sh`` builds the project's two images from their Dockerfiles, and
``hack/build-helm.sh`` builds helm. Each is idempotent and cached; this module runs them and gives
a handle with ``kubectl`` on the cluster.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import repo_root

#: The Docker network kind puts its nodes on.
KIND_NETWORK = "kind"


def hack(script: str, *args: str, timeout_s: float = 3600) -> str:
    """Run ``hack/<script>`` and return the last line it printed on stdout.

    Raises:
        RuntimeError: it failed; the message carries the end of its stderr.
    """
    res = subprocess.run(["bash", str(repo_root() / "hack" / script), *args], capture_output=True, text=True,
                         timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"hack/{script} {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    lines = res.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def gateway_ip() -> str:
    """The IPv4 gateway of kind's Docker network: the host address pods reach (e.g. ``172.18.0.1``).

    Raises:
        RuntimeError: no kind network (create the cluster first) or no IPv4 gateway on it.
    """
    res = subprocess.run(["docker", "network", "inspect", KIND_NETWORK], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"docker network inspect {KIND_NETWORK}: {res.stderr.strip()}")
    for cfg in json.loads(res.stdout)[0]["IPAM"]["Config"]:
        if "." in cfg.get("Gateway", ""):
            return str(cfg["Gateway"])
    raise RuntimeError(f"the Docker network {KIND_NETWORK} has no IPv4 gateway")


@dataclass
class KindCluster:
    """A handle on the kind cluster: its kubeconfig and ``kubectl``.

    Attributes:
        kubeconfig: path of the admin kubeconfig ``hack/kind-cluster.sh`` wrote.
        kubectl_path: the kubectl to run (built with the control plane, same version, when present).
    """

    kubeconfig: Path
    kubectl_path: str = "kubectl"

    @classmethod
    def up(cls) -> KindCluster:
        """Create or reuse the cluster; wait until its nodes are Ready.

        Raises:
            RuntimeError: the cluster could not be made (the message says why).
        """
        return cls(Path(hack("kind-cluster.sh", "up")), _kubectl())

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster.

        Raises:
            RuntimeError: with ``check`` and a non-zero exit; the message carries kubectl's stderr.
        """
        res = subprocess.run([self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args], input=input, text=True,
                             capture_output=True, timeout=timeout_s)
        if check and res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def get_json(self, *args: str) -> dict:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def raw(self, path: str) -> str:
        """``kubectl get --raw PATH`` (e.g. a pod's port through the API server's proxy)."""
        return self.kubectl("get", "--raw", path, timeout_s=30).stdout


def _kubectl() -> str:
    """kubectl built from the Kubernetes module (same version as the cluster), else the one on PATH."""
    try:
        return str(Path(hack("build-kube.sh")) / "kubectl")
    except RuntimeError:
        return "kubectl"
