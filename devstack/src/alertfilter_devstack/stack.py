"""``devstack up | status | env | down [--purge]``: the whole chain as local processes.

Parts: two real KRaft Kafka brokers ("central" and the pool-local one), a real control plane
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with Strimzi's and the project's
CRDs, process nodes labelled like the filter pools of ``kind-config.yaml``, the Strimzi stand-in
(topics, users, MirrorMaker 2 against the local brokers) and the operator. State lives in
``.cache/devstack`` (``DEVSTACK_DIR``); ``down`` stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .controlplane import ControlPlane
from .crds import install_crds
from .kafka import KafkaBroker
from .procs import free_port, port_open, repo_root, wait_until

INPUT_TOPIC = "alerts"
DEMO_NAMESPACE = "science"
KAFKA_NAMESPACE = "kafka"


def state_dir() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", repo_root() / ".cache" / "devstack"))


def say(msg: str) -> None:
    print(msg, flush=True)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _load() -> dict[str, Any]:
    f = state_dir() / "state.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _save(state: dict[str, Any]) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "state.json").write_text(json.dumps(state, indent=2))


def pool_nodes() -> list[dict[str, Any]]:
    """Process nodes for the filter-pool workers of kind-config.yaml: name, labels, taints."""
    cfg = yaml.safe_load((repo_root() / "kind-config.yaml").read_text())
    out, counts = [], {}
    for node in cfg["nodes"]:
        labels = node.get("labels") or {}
        pool = labels.get("alerts.lsst.io/pool")
        if node.get("role") != "worker" or not pool:
            continue
        counts[pool] = counts.get(pool, 0) + 1
        taints = []
        for patch in node.get("kubeadmConfigPatches") or []:
            taints += (yaml.safe_load(patch).get("nodeRegistration") or {}).get("taints") or []
        out.append({"name": f"devstack-{pool}-{counts[pool]}", "labels": labels, "taints": taints})
    return out


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    log = open(state_dir() / f"{name}.log", "ab")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return proc.pid


def filterpool_manifest(central: str) -> dict[str, Any]:
    """The FilterPool for the local stack: pool-a's process nodes, a pool-local Kafka without
    authentication (the local brokers have none), the mirror from the local central broker."""
    return {"apiVersion": "alerts.lsst.io/v1alpha1", "kind": "FilterPool", "metadata": {"name": "pool-a"},
            "spec": {"nodeSelector": {"alerts.lsst.io/pool": "pool-a"},
                     "tolerations": [{"key": "alerts.lsst.io/pool", "operator": "Equal", "value": "pool-a",
                                      "effect": "NoSchedule"}],
                     "capacity": {"nodes": 2, "filtersPerNode": 50},
                     "kafka": {"namespace": KAFKA_NAMESPACE, "replicas": 1, "authentication": "none",
                               "storage": {"type": "ephemeral"}},
                     "mirror": {"sourceCluster": "central", "sourceBootstrapServers": central, "topic": INPUT_TOPIC,
                                "tasksMax": 1}}}


def up(webhook: str = "local") -> dict[str, Any]:
    """Start every part (those already running are kept). Returns the state."""
    st = _load()
    if st and _alive(st.get("operator")) and _alive((st.get("controlplane") or {}).get("pids", {}).get("kube-apiserver")):
        say(f"devstack is already up (state in {state_dir()})")
        return st
    if st:
        down(purge=False, quiet=True)
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True)
    st = {"dir": str(d)}
    say("== devstack: building or reusing the parts (first time: Kafka jars ~1 min, Kubernetes binaries ~7 min)")
    from .controlplane import kube_bin_dir
    from .kafka import kafka_libs

    kafka_libs()
    kube_bin_dir()
    say("== Kafka: central and pool-local brokers (KRaft)")
    brokers = {}
    for name in ("central", "pool"):
        b = KafkaBroker(d / f"kafka-{name}", heap="384m").start()
        brokers[name] = b.bootstrap
        st[f"kafka_{name}"] = {"bootstrap": b.bootstrap, "pid": b.proc.pid if b.proc else None}
        b.proc = None  # keep running
        say(f"   {name}: {b.bootstrap}")
    from alertfilter.kafkautil import ensure_topics

    ensure_topics(brokers["central"], {INPUT_TOPIC: 1})
    _save(st)
    say("== Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler")
    cp = ControlPlane(d / "controlplane", controllers=True).start()
    st["controlplane"] = {"kubeconfig": str(cp.kubeconfig), "server": cp.server, "kubectl": cp.kubectl_path,
                          "pids": {n: p.pid for n, p in cp.procs.items()}}
    cp.procs.clear()  # keep running
    _save(st)
    install_crds(cp)
    for ns in (KAFKA_NAMESPACE, DEMO_NAMESPACE):
        if cp.kubectl("get", "namespace", ns, check=False).returncode:
            cp.kubectl("create", "namespace", ns)
    say(f"   API server {cp.server}; CRDs installed; namespaces {KAFKA_NAMESPACE}, {DEMO_NAMESPACE}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERTFILTER_", "DEVSTACK_"))}
    env["KUBECONFIG"] = str(cp.kubeconfig)
    py = sys.executable
    say("== process nodes (labelled like kind-config.yaml's filter pools)")
    st["nodes"] = {}
    for node in pool_nodes():
        labels = ",".join(f"{k}={v}" for k, v in node["labels"].items())
        taints = ",".join(f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in node["taints"])
        pid = _spawn(node["name"], [py, "-m", "alertfilter_devstack.nodeagent", "--name", node["name"], "--labels", labels,
                                    "--taints", taints, "--workdir", str(d / "nodes" / node["name"]),
                                    "--kubeconfig", str(cp.kubeconfig)], env)
        st["nodes"][node["name"]] = pid
        say(f"   {node['name']}: {labels}")
    _save(st)
    say("== Strimzi stand-in (development only) and the operator")
    standin_port = free_port()
    st["standin"] = _spawn("strimzi-standin", [py, "-m", "alertfilter_devstack.strimzi_standin"], {
        **env, "DEVSTACK_POOL_BOOTSTRAP": brokers["pool"], "DEVSTACK_WORKDIR": str(d),
        "DEVSTACK_STANDIN_LIVENESS": f"http://127.0.0.1:{standin_port}/healthz"})
    schema_dir = d / "schemas"
    schema_dir.mkdir(exist_ok=True)
    health = free_port()
    st["operator_health"] = health
    st["operator"] = _spawn("operator", [py, "-m", "alertfilter_operator"], {
        **env, "ALERTFILTER_OPERATOR_WEBHOOK": webhook, "ALERTFILTER_OPERATOR_WEBHOOK_PORT": str(free_port()),
        "ALERTFILTER_OPERATOR_HEALTH_PORT": str(health), "ALERTFILTER_OPERATOR_SCHEMA_DIR": str(schema_dir),
        "ALERTFILTER_OPERATOR_LOG_FORMAT": "plain", "ALERTFILTER_OPERATOR_RESYNC_SECONDS": "60"})
    st["schema_dir"] = str(schema_dir)
    pool_file = d / "filterpool.yaml"
    pool_file.write_text(yaml.safe_dump(filterpool_manifest(brokers["central"]), sort_keys=False))
    st["filterpool"] = str(pool_file)
    _save(st)
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{health}/healthz"), 90, "the operator", None,
               d / "operator.log")
    if webhook != "off":
        wait_until(lambda: cp.kubectl("get", "validatingwebhookconfiguration", "alertfilters.alerts.lsst.io",
                                      check=False).returncode == 0, 60, "the operator's webhook", None, d / "operator.log")
    wait_until(lambda: _nodes_ready(cp) >= len(st["nodes"]), 90, "the process nodes", None, d / "controlplane" / "kube-apiserver.log")
    say(f"== devstack is up. FilterPool manifest: {pool_file}")
    return st


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _nodes_ready(cp: ControlPlane) -> int:
    r = cp.kubectl("get", "nodes", "-o", "json", check=False)
    if r.returncode:
        return 0
    return sum(1 for n in json.loads(r.stdout)["items"] for c in n["status"].get("conditions", [])
               if c["type"] == "Ready" and c["status"] == "True")


def control_plane() -> ControlPlane:
    """A handle on the running control plane (for kubectl)."""
    st = _load()
    cp = ControlPlane(state_dir() / "controlplane")
    cp.bins = Path(st["controlplane"]["kubectl"]).parent if st.get("controlplane") else None
    return cp


def status() -> int:
    st = _load()
    if not st:
        say("devstack is down")
        return 1
    rows = []
    for name in ("central", "pool"):
        k = st.get(f"kafka_{name}") or {}
        rows.append((f"kafka {name}", _alive(k.get("pid")) and port_open(int(k["bootstrap"].rsplit(":", 1)[1])),
                     k.get("bootstrap", "")))
    cpst = st.get("controlplane") or {}
    for comp, pid in (cpst.get("pids") or {}).items():
        rows.append((comp, _alive(pid), cpst.get("server", "") if comp == "kube-apiserver" else ""))
    for node, pid in (st.get("nodes") or {}).items():
        rows.append((f"node {node}", _alive(pid), ""))
    rows.append(("strimzi stand-in", _alive(st.get("standin")), ""))
    for pid_file in sorted((state_dir() / "mirrormaker2").glob("*.pid")):
        pid = int(pid_file.read_text().strip() or 0)
        rows.append((f"mirrormaker2 {pid_file.stem}", _alive(pid), f"log {pid_file.with_suffix('.log')}"))
    rows.append(("operator", _alive(st.get("operator")) and _http_ok(f"http://127.0.0.1:{st.get('operator_health')}/healthz"),
                 f"/healthz on {st.get('operator_health')}"))
    ok = all(r[1] for r in rows)
    for name, healthy, detail in rows:
        say(f"{name:<28} {'up' if healthy else 'DOWN':<5} {detail}")
    return 0 if ok else 1


def env_lines() -> list[str]:
    st = _load()
    if not st:
        return []
    cpst = st["controlplane"]
    return [f"export KUBECONFIG={cpst['kubeconfig']}",
            f"export PATH={Path(cpst['kubectl']).parent}:$PATH   # a kubectl matching the API server",
            f"export CENTRAL_BOOTSTRAP={st['kafka_central']['bootstrap']}   # produce alerts to topic '{INPUT_TOPIC}' here",
            f"export POOL_BOOTSTRAP={st['kafka_pool']['bootstrap']}   # filtered topics live here",
            f"export SCHEMA_DIR={st['schema_dir']}",
            f"# FilterPool for this stack: {st['filterpool']}"]


def down(purge: bool = False, quiet: bool = False) -> int:
    """Stop everything devstack started (reverse order), then sweep any process left behind."""
    st = _load()
    d = state_dir()
    pids: list[int] = []
    if st:
        pids += [st.get("operator"), st.get("standin")]
        pids += list((st.get("nodes") or {}).values())
        pids += list(reversed(list(((st.get("controlplane") or {}).get("pids") or {}).values())))
        pids += [(st.get("kafka_pool") or {}).get("pid"), (st.get("kafka_central") or {}).get("pid")]
    for pid in [p for p in pids if p]:
        _stop_group(pid)
    # anything a part started that outlived it: runner processes, MirrorMaker 2
    if d.exists():
        for pid_file in list(d.rglob("*.pid")):
            try:
                _stop_group(int(pid_file.read_text().strip()))
            except ValueError:
                pass
            pid_file.unlink(missing_ok=True)
    if purge and d.exists():
        shutil.rmtree(d)
    elif (d / "state.json").exists():
        (d / "state.json").unlink()
    if not quiet:
        say("devstack is down" + (" and its data removed" if purge else ""))
    return 0


def _stop_group(pid: int, grace_s: float = 20) -> None:
    if not _alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                pass
            if not _alive(pid):
                return
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devstack", description="The alert filter operator's local stack (development only).")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start every part (building what is missing first)")
    u.add_argument("--webhook", choices=("local", "off"), default="local", help="run the operator's admission webhook")
    sub.add_parser("status", help="each part's health")
    sub.add_parser("env", help="shell lines exporting KUBECONFIG, kubectl and the bootstrap addresses")
    dn = sub.add_parser("down", help="stop every process devstack started")
    dn.add_argument("--purge", action="store_true", help="also remove the data")
    args = p.parse_args(argv)
    if args.cmd == "up":
        try:
            up(args.webhook)
        except Exception as exc:  # noqa: BLE001 - say what failed, leave logs
            say(f"devstack up failed: {exc}\nlogs in {state_dir()}; `devstack down` stops what started")
            return 1
        return 0
    if args.cmd == "status":
        return status()
    if args.cmd == "env":
        lines = env_lines()
        print("\n".join(lines) if lines else "# devstack is down")
        return 0 if lines else 1
    return down(args.purge)


if __name__ == "__main__":
    sys.exit(main())
