"""A real Kubernetes control plane as local processes: etcd, kube-apiserver, and on request
kube-controller-manager and kube-scheduler (the approach of controller-runtime's envtest).

The binaries are built from their Go modules by ``hack/build-kube.sh`` (cached in
``.cache/kube/<version>``). Usage::

    with ControlPlane(workdir) as cp:
        cp.kubeconfig   # path of an admin kubeconfig
        cp.kubectl("get", "ns")

TLS: the API server serves a self-signed certificate it generates in ``workdir/certs``; the
kubeconfig trusts it through its CA bundle. The admin credential is a static bearer token in
group ``system:masters``.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .procs import free_port, repo_root, stop_process, wait_until

#: Service CIDR handed to the API server; only used for ClusterIP allocation, nothing routes it.
SERVICE_CIDR = "10.96.0.0/16"


def kube_bin_dir() -> Path:
    """Directory of the control-plane binaries, built by ``hack/build-kube.sh`` when missing.

    Raises:
        RuntimeError: the build failed (no Go, module proxy unreachable...), with its output.
    """
    env_dir = os.environ.get("KUBE_BIN_DIR")
    res = subprocess.run(["bash", str(repo_root() / "hack" / "build-kube.sh")], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building the Kubernetes binaries failed:\n{res.stderr[-4000:]}")
    return Path(env_dir or res.stdout.strip().splitlines()[-1])


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager and scheduler when ``controllers``) on free loopback ports.

    Attributes:
        workdir: folder for data, certificates, keys, kubeconfig and logs (``*.log``).
        controllers: also start kube-controller-manager and kube-scheduler.
    """

    workdir: Path
    controllers: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0
    token: str = ""
    bins: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self._log(name), "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs[name] = proc
        (self.workdir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _keys(self) -> tuple[Path, Path]:
        priv, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        if not priv.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(priv), "2048"], check=True, capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(priv), "-pubout", "-out", str(pub)], check=True,
                           capture_output=True)
        return priv, pub

    def _get(self, path: str) -> tuple[int, str]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)

    def start(self, timeout_s: float = 120.0) -> "ControlPlane":
        """Start etcd and kube-apiserver (and the controllers when asked); wait for ``/readyz``.

        Raises:
            RuntimeError: a component exited or was not ready in time; the message carries the
                end of its log, which stays in ``workdir``.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        bins = self.bins = kube_bin_dir()
        try:
            self._start(bins, timeout_s)
        except Exception:
            self.stop()
            raise
        return self

    def _start(self, bins: Path, timeout_s: float) -> None:
        wd = self.workdir
        etcd_port, peer_port = free_port(), free_port()
        etcd = self._spawn("etcd", [
            str(bins / "etcd"), "--data-dir", str(wd / "etcd"), "--name", "default",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--quota-backend-bytes", str(2 * 1024**3), "--log-level", "warn"])
        from .procs import port_open

        wait_until(lambda: port_open(etcd_port), 30, "etcd", etcd, self._log("etcd"))

        priv, pub = self._keys()
        self.token = secrets.token_hex(16)
        (wd / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        self.api_port = free_port()
        apiserver = self._spawn("kube-apiserver", [
            str(bins / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.api_port}",
            f"--cert-dir={wd / 'certs'}", f"--token-auth-file={wd / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pub}", f"--service-account-signing-key-file={priv}",
            "--allow-privileged=true", "--enable-priority-and-fairness=false", "--event-ttl=1h",
            "--storage-media-type=application/json", "--v=1"])
        wait_until(lambda: self._get("/readyz")[0] == 200, timeout_s, "kube-apiserver", apiserver,
                   self._log("kube-apiserver"), interval_s=0.3)
        self._write_kubeconfig()
        if self.controllers:
            self.start_controllers(bins)

    def _write_kubeconfig(self) -> None:
        ca = self.workdir / "certs" / "apiserver.crt"
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "devstack",
            "clusters": [{"name": "devstack", "cluster": {"server": self.server, "certificate-authority": str(ca),
                                                          "tls-server-name": "kubernetes"}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "devstack", "context": {"cluster": "devstack", "user": "admin"}}],
        }
        self.kubeconfig.write_text(json.dumps(cfg, indent=2))
        self.kubeconfig.chmod(0o600)

    def start_controllers(self, bins: Path | None = None, timeout_s: float = 60.0) -> None:
        """Start kube-controller-manager and kube-scheduler (Deployments become Pods, Pods get nodes)."""
        bins = bins or kube_bin_dir()
        priv, _ = self._keys()
        cm = self._spawn("kube-controller-manager", [
            str(bins / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
            f"--service-account-private-key-file={priv}", f"--root-ca-file={self.workdir / 'certs' / 'apiserver.crt'}",
            "--use-service-account-credentials=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route", "--v=1"])
        sched = self._spawn("kube-scheduler", [
            str(bins / "kube-scheduler"), f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--v=1"])
        import time

        time.sleep(1.0)
        for name, proc in (("kube-controller-manager", cm), ("kube-scheduler", sched)):
            if proc.poll() is not None:
                from .procs import tail

                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(self._log(name))}")

    @property
    def kubectl_path(self) -> str:
        """The kubectl built with the control plane (same version), else the one on PATH."""
        built = self.bins / "kubectl" if self.bins else None
        return str(built) if built and built.exists() else "kubectl"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` against this control plane.

        Raises:
            RuntimeError: with ``check`` and a non-zero exit; the message carries kubectl's stderr.
        """
        res = subprocess.run([self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args], input=input, text=True,
                             capture_output=True)
        if check and res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def stop(self) -> None:
        """Stop every component (reverse start order; SIGTERM then SIGKILL). Data stays in ``workdir``."""
        for name in reversed(list(self.procs)):
            stop_process(self.procs[name], grace_s=10)
            (self.workdir / f"{name}.pid").unlink(missing_ok=True)
        self.procs.clear()

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
