"""``devstack up | status | env | down [--purge] [--cluster]``: the whole chain on a kind cluster.

Parts:
- the kind cluster of ``kind-config.yaml`` (``hack/kind-cluster.sh``: every node, label and taint;
  pod networking across nodes; NetworkPolicy enforced), with the project's two images built from
  their Dockerfiles (``hack/build-images.sh``) and loaded into it;
- the operator, installed with the project's Helm chart (its image running in the cluster, its
  webhook reached through the chart's Service); the chart's central Kafka and full-stream topic;
- two real KRaft Kafka brokers on the host ("central" and the pool-local one), a read-only schema
  registry over the schemas the demo's producer writes, and the Strimzi stand-in (topics, users,
  MirrorMaker 2, and broker pods that forward to the pool broker): pods reach the host on the kind
  network's gateway. Both brokers authenticate with SASL SCRAM-SHA-512 and enforce ACLs
  (``StandardAuthorizer``); the super users' passwords are in ``credentials.json`` in the state
  folder (``kafkaauth``), the filters' users come from their KafkaUsers (``standin_users``);
- the namespaces ``kafka`` and ``science``, the latter enforcing the restricted Pod Security Standard.

State lives in ``.cache/devstack`` (``DEVSTACK_DIR``). ``down`` stops every host process it started
and uninstalls nothing from the cluster; ``down --cluster`` also deletes the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import brokerpod, hostkafka
from .crds import install_crds
from .kind import KindCluster, gateway_ip, hack
from .procs import free_port, pid_alive, port_open, repo_root, stop_group, wait_until

INPUT_TOPIC = "alerts"
DEMO_NAMESPACE = "science"
KAFKA_NAMESPACE = "kafka"
RELEASE = "alert-filter"
POOL = "pool-a"
#: The pool Kafka the operator makes for FilterPool pool-a (``<pool>-kafka``): the pool broker's pod
#: listener advertises its bootstrap Service, through which the broker pods forward.
POOL_KAFKA = f"{POOL}-kafka"
#: Labels of a namespace whose pods must meet the restricted Pod Security Standard.
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}


def state_dir() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", repo_root() / ".cache" / "devstack"))


def say(msg: str) -> None:
    print(msg, flush=True)


def _load() -> dict[str, Any]:
    f = state_dir() / "state.json"
    return json.loads(f.read_text()) if f.exists() else {}


def _save(state: dict[str, Any]) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "state.json").write_text(json.dumps(state, indent=2))


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    log = open(state_dir() / f"{name}.log", "ab")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return proc.pid


def filterpool_manifest(central: str) -> dict[str, Any]:
    """The FilterPool for the local stack: pool-a's two kind nodes, a pool-local Kafka with SCRAM-SHA-512
    users (each filter gets its own, with its ACLs), the mirror from the local central broker."""
    return {"apiVersion": "alerts.lsst.io/v1alpha1", "kind": "FilterPool", "metadata": {"name": POOL},
            "spec": {"nodeSelector": {"alerts.lsst.io/pool": POOL},
                     "tolerations": [{"key": "alerts.lsst.io/pool", "operator": "Equal", "value": POOL,
                                      "effect": "NoSchedule"}],
                     "capacity": {"nodes": 2, "filtersPerNode": 50},
                     "kafka": {"namespace": KAFKA_NAMESPACE, "replicas": 1, "authentication": "scram-sha-512",
                               "storage": {"type": "ephemeral"}},
                     "mirror": {"sourceCluster": "central", "sourceBootstrapServers": central, "topic": INPUT_TOPIC,
                                "tasksMax": 1}}}


def helm_values(registry_url: str, operator_image_id: str) -> list[str]:
    """``--set`` arguments of the chart for the local stack (the chart's defaults otherwise).

    ``operator_image_id`` goes in a pod annotation: a rebuilt image keeps its tag, and the changed
    annotation is what makes ``helm upgrade`` roll the operator onto it.
    """
    sets = {"operator.podAnnotations.devstack\\.alerts\\.lsst\\.io/image-id": operator_image_id,"operator.logFormat": "plain", "operator.resyncSeconds": "60",
            "operator.resources.requests.cpu": "50m", "operator.resources.requests.memory": "128Mi",
            "operator.nodeSelector.alerts\\.lsst\\.io/role": "central",
            "runner.schemaRegistry": registry_url,
            "centralKafka.replicas": "1", "centralKafka.storage.type": "ephemeral",
            "centralKafka.topic.partitions": "1", "centralKafka.topic.replicas": "1",
            "centralKafka.topic.minInsyncReplicas": "1"}
    return [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]


def _images(cluster: KindCluster) -> list[str]:
    images = [line for line in subprocess.run(["bash", str(repo_root() / "hack" / "build-images.sh")],
                                              capture_output=True, text=True, check=True).stdout.split() if line]
    hack("kind-cluster.sh", "load", *images)
    return images


def _stop_standin(st: dict[str, Any]) -> None:
    """Stop the stand-in and the MirrorMaker 2 processes it started (they run in sessions of their own)."""
    if st.get("standin"):
        stop_group(st["standin"])
    for pid_file in (state_dir() / "mirrormaker2").glob("*.pid"):
        try:
            stop_group(int(pid_file.read_text().strip()))
        except ValueError:
            pass
        pid_file.unlink(missing_ok=True)


def up() -> dict[str, Any]:
    """Bring every part up; idempotent: what runs is kept, what changed is rebuilt (images, the
    chart's release), the stand-in is restarted (the cluster may be a new one). Returns the state.

    Raises:
        RuntimeError: a part could not be built or started; the message says which and why.
    """
    st = _load()
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True)
    st["dir"] = str(d)
    say("== kind cluster from kind-config.yaml (reused when it is up; the first time the node image is built offline, ~15 min)")
    cluster = KindCluster.up()
    st.update(kubeconfig=str(cluster.kubeconfig), kubectl=cluster.kubectl_path)
    say("== the project's images from runtime/Dockerfile and operator/Dockerfile, loaded into kind")
    st["images"] = _images(cluster)
    say("   " + ", ".join(st["images"]))
    gw = gateway_ip()
    say(f"== Kafka on the host: central and pool-local brokers (KRaft, SASL SCRAM-SHA-512, ACLs); "
        f"pods reach them through {gw}")
    hostkafka.brokers_up(st, d, gw, brokerpod.bootstrap_service(POOL_KAFKA, KAFKA_NAMESPACE))
    from alertfilter.kafkautil import ensure_topics

    ensure_topics(st["kafka_central"]["sasl_bootstrap"], {INPUT_TOPIC: 1}, kafka_config=hostkafka.admin_config(st))
    _save(st)
    schema_dir = d / "schemas"
    schema_dir.mkdir(exist_ok=True)
    st["schema_dir"] = str(schema_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERTFILTER_", "DEVSTACK_"))}
    env["KUBECONFIG"] = str(cluster.kubeconfig)
    py = sys.executable
    if not (pid_alive(st.get("registry")) and st.get("registry_url", "").startswith(f"http://{gw}:")):
        if st.get("registry"):
            stop_group(st["registry"])
        # the same port as before when there was one: the runners' Deployments name the URL
        reg_port = int(st["registry_url"].rsplit(":", 1)[1]) if st.get("registry_url") else free_port()
        st["registry_url"] = f"http://{gw}:{reg_port}"
        st["registry"] = _spawn("schema-registry", [py, "-m", "alertfilter_devstack.registry", "--dir",
                                                    str(schema_dir), "--host", gw, "--port", str(reg_port)], env)
        _save(st)
    say("== Strimzi's CRDs; namespaces (science enforces the restricted Pod Security Standard)")
    install_crds(cluster)
    for ns, labels in ((KAFKA_NAMESPACE, {}), (DEMO_NAMESPACE, RESTRICTED)):
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    say("== Strimzi stand-in (development only)")
    _stop_standin(st)
    st["standin"] = _spawn("strimzi-standin", [py, "-m", "alertfilter_devstack.strimzi_standin"], {
        **env, "DEVSTACK_POOL_BOOTSTRAP": st["kafka_pool"]["sasl_bootstrap"], "DEVSTACK_WORKDIR": str(d),
        "DEVSTACK_CENTRAL_BOOTSTRAP": st["kafka_central"]["sasl_bootstrap"], "DEVSTACK_CENTRAL_NAME": "central",
        "DEVSTACK_CREDENTIALS": st["credentials"],
        "DEVSTACK_POOL_POD_TARGET": st["kafka_pool"]["pod_target"],
        "DEVSTACK_BROKER_IMAGE": next(i for i in st["images"] if "runner" in i),
        "DEVSTACK_STANDIN_LIVENESS": f"http://127.0.0.1:{free_port()}/healthz"})
    _save(st)
    say("== the operator, with the project's Helm chart (strimzi.enabled=false: the stand-in does its job)")
    helm = hack("build-helm.sh")
    hack("chart-deps.sh")
    chart = repo_root() / "helm" / "alert-filter-operator"
    op_image = next(i for i in st["images"] if "operator" in i)
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", op_image], capture_output=True,
                              text=True, check=True).stdout.strip().replace(":", "-")
    res = subprocess.run([helm, "upgrade", "--install", RELEASE, str(chart), "--kubeconfig", str(cluster.kubeconfig),
                          "--namespace", KAFKA_NAMESPACE, *helm_values(st["registry_url"], image_id),
                          "--wait", "--timeout", "5m"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"helm install failed: {res.stderr.strip()}")
    pool_file = d / "filterpool.yaml"
    pool_file.write_text(yaml.safe_dump(filterpool_manifest(st["kafka_central"]["sasl_bootstrap"]), sort_keys=False))
    st["filterpool"] = str(pool_file)
    _save(st)
    wait_until(lambda: cluster.kubectl("get", "validatingwebhookconfiguration", "alertfilters.alerts.lsst.io",
                                       check=False).returncode == 0, 120, "the operator's webhook", None, None)
    say(f"== devstack is up. FilterPool manifest: {pool_file}")
    return st


def is_up() -> bool:
    """True when the host processes of a previous ``up`` still run."""
    st = _load()
    return bool(st) and all(pid_alive(p) for p in (st.get("standin"), st.get("registry"),
                                                   (st.get("kafka_pool") or {}).get("pid"),
                                                   (st.get("kafka_central") or {}).get("pid")))


def cluster() -> KindCluster:
    """A handle on the running stack's cluster (for kubectl).

    Raises:
        RuntimeError: the stack is down.
    """
    st = _load()
    if not st.get("kubeconfig"):
        raise RuntimeError("devstack is down: run `devstack up`")
    return KindCluster(Path(st["kubeconfig"]), st.get("kubectl", "kubectl"))


# kept for callers of the former name
control_plane = cluster


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def status() -> int:
    st = _load()
    if not st:
        say("devstack is down")
        return 1
    rows = []
    for name in ("central", "pool"):
        k = st.get(f"kafka_{name}") or {}
        rows.append((f"kafka {name}", pid_alive(k.get("pid")) and port_open(int(k["bootstrap"].rsplit(":", 1)[1])),
                     k.get("sasl_bootstrap") or k.get("bootstrap", "")))
    rows.append(("schema registry", pid_alive(st.get("registry")) and _http_ok(st["registry_url"] + "/healthz"),
                 st.get("registry_url", "")))
    rows.append(("strimzi stand-in", pid_alive(st.get("standin")), ""))
    for pid_file in sorted((state_dir() / "mirrormaker2").glob("*.pid")):
        pid = int(pid_file.read_text().strip() or 0)
        rows.append((f"mirrormaker2 {pid_file.stem}", pid_alive(pid), f"log {pid_file.with_suffix('.log')}"))
    c = cluster()
    nodes = c.kubectl("get", "nodes", "--no-headers", check=False)
    rows.append(("kind cluster", nodes.returncode == 0 and " NotReady" not in nodes.stdout, str(c.kubeconfig)))
    op = c.kubectl("-n", KAFKA_NAMESPACE, "get", f"deployment/{RELEASE}-alert-filter-operator", "-o",
                   "jsonpath={.status.readyReplicas}", check=False)
    rows.append(("operator (in the cluster)", op.stdout.strip() == "1", f"deployment {RELEASE}-alert-filter-operator"))
    for name, healthy, detail in rows:
        say(f"{name:<28} {'up' if healthy else 'DOWN':<5} {detail}")
    return 0 if all(r[1] for r in rows) else 1


def env_lines() -> list[str]:
    st = _load()
    if not st:
        return []
    return [f"export KUBECONFIG={st['kubeconfig']}",
            f"export PATH={Path(st['kubectl']).parent}:$PATH   # a kubectl matching the cluster",
            *hostkafka.env_lines(st),
            f"export SCHEMA_DIR={st['schema_dir']}   # served to the runners by {st['registry_url']}",
            f"# FilterPool for this stack: {st['filterpool']}"]


def down(purge: bool = False, quiet: bool = False, delete_cluster: bool = False) -> int:
    """Stop every host process devstack started (the cluster keeps running unless ``delete_cluster``)."""
    st = _load()
    d = state_dir()
    pids: list[int] = []
    if st:
        pids += [st.get("standin"), st.get("registry")]
        pids += [(st.get("kafka_pool") or {}).get("pid"), (st.get("kafka_central") or {}).get("pid")]
    for pid in [p for p in pids if p]:
        stop_group(pid)
    # anything a part started that outlived it: MirrorMaker 2
    if d.exists():
        for pid_file in list(d.rglob("*.pid")):
            try:
                stop_group(int(pid_file.read_text().strip()))
            except ValueError:
                pass
            pid_file.unlink(missing_ok=True)
    if delete_cluster:
        hack("kind-cluster.sh", "down")
    if purge and d.exists():
        shutil.rmtree(d)
    elif (d / "state.json").exists():
        (d / "state.json").unlink()
    if not quiet:
        say("devstack is down" + (" and its data removed" if purge else "")
            + ("; the kind cluster is deleted" if delete_cluster else "; the kind cluster keeps running"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devstack", description="The alert filter operator's local stack (development only).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start every part (building what is missing first)")
    sub.add_parser("status", help="each part's health")
    sub.add_parser("env", help="shell lines exporting KUBECONFIG, kubectl and the bootstrap addresses")
    dn = sub.add_parser("down", help="stop every host process devstack started")
    dn.add_argument("--purge", action="store_true", help="also remove the data")
    dn.add_argument("--cluster", action="store_true", help="also delete the kind cluster")
    args = p.parse_args(argv)
    if args.cmd == "up":
        try:
            up()
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
    return down(args.purge, delete_cluster=args.cluster)


if __name__ == "__main__":
    sys.exit(main())
