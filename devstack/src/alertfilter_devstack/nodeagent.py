"""A process node: a Kubernetes Node whose Pods run as local processes (development only).

``python -m alertfilter_devstack.nodeagent --name N --labels k=v,... --taints k=v:Effect,...``

What a kubelet would do, for the project's own images:

- registers the Node (16 CPU, 64 GiB: an m4.4xlarge, as the pools' nodes in kind-config.yaml) and
  keeps it Ready (status heartbeat and Lease renewal);
- runs the containers of the Pods bound to it as local processes: the project's images map to the
  matching local commands (``alertfilter-runner*`` → ``python -m alertfilter``), env (values,
  secretKeyRef, configMapKeyRef, fieldRef), ConfigMap/Secret/emptyDir volumes are materialised
  in a folder and mount paths in env and args are rewritten to it; the runner's metrics port is
  remapped to a free local port (annotated on the Pod as ``devstack.alerts.lsst.io/metrics-port``);
- reports phase, conditions and container statuses, with readiness from the container's HTTP
  readiness probe; restarts containers per ``restartPolicy`` with back-off;
- on deletion sends SIGTERM, then SIGKILL after the grace period, and removes the Pod.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from .procs import free_port

log = logging.getLogger("devstack.node")

#: Image name prefix → the local command that stands for the image's entrypoint.
IMAGE_COMMANDS = {
    "alertfilter-runner": [sys.executable, "-m", "alertfilter"],
    "alertfilter-operator": [sys.executable, "-m", "alertfilter_operator"],
}
METRICS_PORT_ANNOTATION = "devstack.alerts.lsst.io/metrics-port"
KUBE_VERSION = "v1.34.4"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_command(image: str) -> list[str] | None:
    """The local command of a project image (registry and tag ignored), or None."""
    name = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    return IMAGE_COMMANDS.get(name)


@dataclass
class Container:
    name: str
    spec: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: str | None = None
    last_exit: int | None = None
    finished_at: str | None = None
    next_start: float = 0.0
    ready: bool = False
    waiting_reason: str | None = None
    waiting_message: str = ""
    metrics_port: int | None = None
    exit_message: str = ""


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    dir: Path
    restart_policy: str
    grace_s: float
    containers: list[Container] = field(default_factory=list)
    stopping: bool = False
    start_time: str = field(default_factory=now)


class NodeAgent:
    def __init__(self, name: str, labels: dict[str, str], taints: list[dict[str, str]], workdir: Path,
                 api: kubernetes.client.ApiClient) -> None:
        self.name, self.labels, self.taints = name, labels, taints
        self.workdir = workdir
        self.core = kubernetes.client.CoreV1Api(api)
        self.coord = kubernetes.client.CoordinationV1Api(api)
        self.pods: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    # --- node -------------------------------------------------------------------------------------
    def node_status(self) -> dict[str, Any]:
        ts = now()
        cap = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        return {
            "capacity": cap, "allocatable": cap,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "process node is ready",
                 "lastHeartbeatTime": ts, "lastTransitionTime": ts},
                *({"type": t, "status": "False", "reason": f"KubeletHas{r}", "message": "ok", "lastHeartbeatTime": ts,
                   "lastTransitionTime": ts}
                  for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                               ("PIDPressure", "SufficientPID"))),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "nodeInfo": {"kubeletVersion": KUBE_VERSION, "kubeProxyVersion": KUBE_VERSION, "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "devstack://process", "osImage": "devstack",
                         "kernelVersion": os.uname().release, "machineID": self.name, "systemUUID": self.name,
                         "bootID": self.name},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }

    def register(self) -> None:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": {**self.labels, "kubernetes.io/hostname": self.name,
                                                            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                                            "devstack.alerts.lsst.io/process-node": "true"}},
                "spec": {"taints": self.taints}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_node(self.name, {"metadata": {"labels": body["metadata"]["labels"]},
                                             "spec": {"taints": self.taints or None}})
        self.core.patch_node_status(self.name, {"status": self.node_status()})
        log.info("node %s registered", self.name)

    def heartbeat(self) -> None:
        while not self.stop.wait(10):
            try:
                self.core.patch_node_status(self.name, {"status": {"conditions": self.node_status()["conditions"]}})
                self._renew_lease()
            except Exception as exc:  # noqa: BLE001 - keep beating
                log.warning("heartbeat failed: %s", exc)

    def _renew_lease(self) -> None:
        ts = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": ts}}
        try:
            self.coord.patch_namespaced_lease(self.name, "kube-node-lease", body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    # --- pods ---------------------------------------------------------------------------------------
    def watch_pods(self) -> None:
        w = kubernetes.watch.Watch()
        while not self.stop.is_set():
            try:
                for ev in w.stream(self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={self.name}",
                                   timeout_seconds=60):
                    pod = self.core.api_client.sanitize_for_serialization(ev["object"])
                    self.on_pod(ev["type"], pod)
                    if self.stop.is_set():
                        break
            except Exception as exc:  # noqa: BLE001 - re-watch
                log.warning("pod watch: %s", exc)
                time.sleep(1)

    def on_pod(self, event: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            run = self.pods.get(uid)
        if event == "DELETED":
            if run:
                self.terminate(run)
            return
        if meta.get("deletionTimestamp"):
            if run and not run.stopping:
                run.stopping = True
                threading.Thread(target=self._terminate_and_remove, args=(run,), daemon=True).start()
            elif not run:
                self._remove(meta["namespace"], meta["name"], uid)
            return
        if run is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            self.admit(pod)

    def admit(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        run = PodRun(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"],
                     dir=self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}",
                     restart_policy=spec.get("restartPolicy", "Always"),
                     grace_s=float(spec.get("terminationGracePeriodSeconds", 30)))
        run.dir.mkdir(parents=True, exist_ok=True)
        mounts = self._volumes(run, pod)
        for c in spec["containers"]:
            ctr = Container(c["name"], c)
            ctr.spec = {**c, "_mounts": mounts}
            run.containers.append(ctr)
        with self.lock:
            self.pods[run.uid] = run
        for ctr in run.containers:
            self._start(run, ctr)
        self.report(run)

    def _volumes(self, run: PodRun, pod: dict[str, Any]) -> dict[str, Path]:
        """Materialise volumes; returns volume name → local folder."""
        out: dict[str, Path] = {}
        for v in pod["spec"].get("volumes") or []:
            d = run.dir / "volumes" / v["name"]
            d.mkdir(parents=True, exist_ok=True)
            try:
                if "configMap" in v:
                    cm = self.core.read_namespaced_config_map(v["configMap"]["name"], run.namespace)
                    for k, val in (cm.data or {}).items():
                        (d / k).write_text(val)
                elif "secret" in v:
                    sec = self.core.read_namespaced_secret(v["secret"]["secretName"], run.namespace)
                    for k, val in (sec.data or {}).items():
                        (d / k).write_bytes(base64.b64decode(val))
            except ApiException as exc:
                log.warning("volume %s of %s/%s: %s", v["name"], run.namespace, run.name, exc.reason)
            out[v["name"]] = d
        return out

    def _env(self, run: PodRun, ctr: Container) -> dict[str, str] | str:
        """The container's environment, or a string saying what is missing."""
        env: dict[str, str] = {}
        for e in ctr.spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            src = e.get("valueFrom") or {}
            try:
                if "secretKeyRef" in src:
                    ref = src["secretKeyRef"]
                    sec = self.core.read_namespaced_secret(ref["name"], run.namespace)
                    env[e["name"]] = base64.b64decode((sec.data or {})[ref["key"]]).decode()
                elif "configMapKeyRef" in src:
                    ref = src["configMapKeyRef"]
                    env[e["name"]] = (self.core.read_namespaced_config_map(ref["name"], run.namespace).data or {})[ref["key"]]
                elif "fieldRef" in src:
                    path = src["fieldRef"]["fieldPath"]
                    env[e["name"]] = {"metadata.name": run.name, "metadata.namespace": run.namespace,
                                      "status.podIP": "127.0.0.1", "spec.nodeName": self.name}.get(path, "")
            except (ApiException, KeyError) as exc:
                return f"{e['name']}: {getattr(exc, 'reason', exc)}"
        return env

    def _rewrite(self, value: str, ctr: Container) -> str:
        """A container path under a volume mount → the volume's local folder. Host paths that exist
        (a process node shares the host's file system) are left alone: ``/tmp/x`` stays ``/tmp/x``
        on the host even when the pod mounts an emptyDir at ``/tmp``."""
        if not value.startswith("/") or os.path.exists(value):
            return value
        mounts = ctr.spec["_mounts"]
        for m in sorted(ctr.spec.get("volumeMounts") or [], key=lambda m: -len(m["mountPath"])):
            local, mp = mounts.get(m["name"]), m["mountPath"].rstrip("/")
            if local is not None and (value == mp or value.startswith(mp + "/")):
                return str(local) + value[len(mp):]
        return value

    def _start(self, run: PodRun, ctr: Container) -> None:
        base = local_command(ctr.spec.get("image", ""))
        if base is None:
            ctr.waiting_reason, ctr.waiting_message = "ImageNotSupportedByProcessNode", \
                f"process nodes run only the project's images, not {ctr.spec.get('image')}"
            return
        env = self._env(run, ctr)
        if isinstance(env, str):
            ctr.waiting_reason, ctr.waiting_message = "CreateContainerConfigError", env
            ctr.next_start = time.monotonic() + 5
            return
        env = {k: self._rewrite(v, ctr) for k, v in env.items()}
        metrics = next((p for p in ctr.spec.get("ports") or [] if p.get("name") == "metrics"), None)
        if metrics is not None:
            ctr.metrics_port = ctr.metrics_port or free_port()
            for k, v in list(env.items()):
                if v == str(metrics["containerPort"]) and k.endswith("PORT"):
                    env[k] = str(ctr.metrics_port)
        # the image's entrypoint stands for any command the spec names: process nodes run only it
        cmd = base + [self._rewrite(a, ctr) for a in ctr.spec.get("args") or []]
        full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ALERTFILTER_", "KUBECONFIG"))}, **env}
        logf = open(run.dir / f"{ctr.name}.log", "ab")
        ctr.proc = subprocess.Popen(cmd, env=full_env, stdout=logf, stderr=subprocess.STDOUT, cwd=run.dir,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        ctr.started_at, ctr.waiting_reason, ctr.ready = now(), None, False
        log.info("started %s/%s[%s] pid %d", run.namespace, run.name, ctr.name, ctr.proc.pid)

    def _probe(self, ctr: Container) -> bool:
        probe = ctr.spec.get("readinessProbe") or {}
        http = probe.get("httpGet")
        if ctr.proc is None or ctr.proc.poll() is not None:
            return False
        if not http or ctr.metrics_port is None:
            return True
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ctr.metrics_port}{http.get('path', '/')}", timeout=1) as r:
                return 200 <= r.status < 400
        except OSError:
            return False

    def supervise(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                runs = list(self.pods.values())
            for run in runs:
                if run.stopping:
                    continue
                changed = False
                for ctr in run.containers:
                    if ctr.proc is not None and ctr.proc.poll() is not None:
                        ctr.last_exit, ctr.finished_at = ctr.proc.returncode, now()
                        ctr.exit_message = _last_lines(run.dir / f"{ctr.name}.log") if ctr.last_exit else ""
                        ctr.proc = None
                        ctr.ready = False
                        changed = True
                        log.info("%s/%s[%s] exited %s", run.namespace, run.name, ctr.name, ctr.last_exit)
                        if run.restart_policy == "Always" or (run.restart_policy == "OnFailure" and ctr.last_exit):
                            backoff = min(10 * 2 ** ctr.restarts, 300)
                            ctr.restarts += 1
                            ctr.next_start = time.monotonic() + backoff
                            ctr.waiting_reason, ctr.waiting_message = "CrashLoopBackOff", f"back-off {backoff}s restarting"
                    if ctr.proc is None and ctr.waiting_reason in ("CrashLoopBackOff", "CreateContainerConfigError") \
                            and time.monotonic() >= ctr.next_start:
                        self._start(run, ctr)
                        changed = True
                    ready = self._probe(ctr)
                    if ready != ctr.ready:
                        ctr.ready, changed = ready, True
                if changed:
                    self.report(run)

    def report(self, run: PodRun) -> None:
        statuses = []
        for c in run.containers:
            st: dict[str, Any] = {"name": c.name, "image": c.spec.get("image", ""), "imageID": "", "ready": c.ready,
                                  "restartCount": c.restarts, "started": c.proc is not None}
            if c.proc is not None:
                st["state"] = {"running": {"startedAt": c.started_at}}
            elif c.waiting_reason:
                st["state"] = {"waiting": {"reason": c.waiting_reason, "message": c.waiting_message}}
            else:
                st["state"] = {"terminated": {"exitCode": c.last_exit or 0, "finishedAt": c.finished_at or now(),
                                              "reason": "Completed" if not c.last_exit else "Error"}}
            if c.last_exit is not None and (c.proc is not None or c.waiting_reason):
                st["lastState"] = {"terminated": {"exitCode": c.last_exit, "finishedAt": c.finished_at,
                                                  "reason": "Error" if c.last_exit else "Completed",
                                                  "message": c.exit_message}}
            statuses.append(st)
        all_ready = all(c.ready for c in run.containers)
        running = any(c.proc is not None for c in run.containers)
        exited = [c for c in run.containers if c.proc is None and not c.waiting_reason and c.last_exit is not None]
        phase = "Running" if running else ("Pending" if not exited else
                                           ("Succeeded" if all(c.last_exit == 0 for c in exited) else "Failed"))
        ts = now()
        cond = lambda t, ok: {"type": t, "status": "True" if ok else "False", "lastTransitionTime": ts}  # noqa: E731
        status = {"phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                  "startTime": run.start_time, "containerStatuses": statuses,
                  "conditions": [cond("PodScheduled", True), cond("Initialized", True),
                                 cond("ContainersReady", all_ready), cond("Ready", all_ready)]}
        port = next((c.metrics_port for c in run.containers if c.metrics_port), None)
        try:
            if port:
                self.core.patch_namespaced_pod(run.name, run.namespace,
                                               {"metadata": {"annotations": {METRICS_PORT_ANNOTATION: str(port)}}})
            self.core.patch_namespaced_pod_status(run.name, run.namespace, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status of %s/%s: %s", run.namespace, run.name, exc.reason)

    def terminate(self, run: PodRun) -> None:
        """SIGTERM every container, SIGKILL after the grace period."""
        procs = [c.proc for c in run.containers if c.proc is not None]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + run.grace_s
        for p in procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        for c in run.containers:
            c.proc = None
        with self.lock:
            self.pods.pop(run.uid, None)

    def _terminate_and_remove(self, run: PodRun) -> None:
        self.terminate(run)
        self._remove(run.namespace, run.name, run.uid)

    def _remove(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0,
                                            body=kubernetes.client.V1DeleteOptions(grace_period_seconds=0,
                                                                                   preconditions={"uid": uid}))
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("removing %s/%s: %s", namespace, name, exc.reason)

    def shutdown(self, *_: object) -> None:
        self.stop.set()
        with self.lock:
            runs = list(self.pods.values())
        for run in runs:
            self.terminate(run)

    def run(self) -> None:
        self.register()
        self._renew_lease()
        for target in (self.heartbeat, self.watch_pods, self.supervise):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        self.stop.wait()


def _last_lines(path: Path, n: int = 3, limit: int = 1500) -> str:
    """The end of a container's log, as kubelet's FallbackToLogsOnError termination message."""
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return ""
    return "\n".join(lines)[-limit:]


def parse_taints(spec: str) -> list[dict[str, str]]:
    """``key=value:Effect,...`` → Node taints."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kv, _, effect = item.rpartition(":")
        key, _, value = kv.partition("=")
        out.append({"key": key, "value": value, "effect": effect})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alertfilter_devstack.nodeagent")
    p.add_argument("--name", required=True)
    p.add_argument("--labels", default="")
    p.add_argument("--taints", default="")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--kubeconfig", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labels = dict(kv.split("=", 1) for kv in args.labels.split(",") if kv)
    api = kubernetes.config.new_client_from_config(args.kubeconfig)
    agent = NodeAgent(args.name, labels, parse_taints(args.taints), args.workdir, api)
    signal.signal(signal.SIGTERM, agent.shutdown)
    signal.signal(signal.SIGINT, agent.shutdown)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
