"""The Strimzi stand-in's broker pods: what runner pods connect to for a pool's Kafka on kind.

Strimzi runs a pool's brokers as pods labelled ``strimzi.io/cluster=<name>`` and
``strimzi.io/kind=Kafka`` behind the Service ``<name>-kafka-bootstrap`` (port 9092); the operator's
NetworkPolicy lets runners reach exactly those pods. The local stack runs its brokers on the host,
so the stand-in makes such a pod that forwards to the broker's listener on the kind network's
gateway (``tcpproxy.py``, in the runner image), and that Service. Both are owned by the ``Kafka``
resource: deleting it removes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The port of Strimzi's plain internal listener, which the operator's NetworkPolicy allows.
KAFKA_PORT = 9092
#: Where the broker pods run: the worker kind-config.yaml keeps for the central Kafka (untainted, and
#: not a pool node, so stopping a pool node never takes the pool's broker with it).
NODE_SELECTOR = {"alerts.lsst.io/role": "central"}


def bootstrap_service(name: str, namespace: str) -> str:
    """``<name>-kafka-bootstrap.<namespace>.svc:9092``: what Strimzi publishes for the plain listener."""
    return f"{name}-kafka-bootstrap.{namespace}.svc:{KAFKA_PORT}"


def _owner(kafka: dict[str, Any]) -> list[dict[str, Any]]:
    meta = kafka["metadata"]
    return [{"apiVersion": kafka["apiVersion"], "kind": "Kafka", "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": False}]


def manifests(kafka: dict[str, Any], image: str, target: str) -> list[dict[str, Any]]:
    """The Deployment and Service standing in for ``kafka``'s brokers.

    Args:
        kafka: the ``Kafka`` resource (``metadata.name``, ``namespace``, ``uid``).
        image: an image with Python 3 (the runner image).
        target: ``host:port`` of the broker listener the pod forwards to.
    """
    name, ns = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    labels = {"strimzi.io/cluster": name, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{name}-kafka",
              "app.kubernetes.io/managed-by": "devstack-strimzi-standin"}
    host, port = target.rsplit(":", 1)
    script = (Path(__file__).with_name("tcpproxy.py")).read_text()
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{name}-kafka", "namespace": ns, "labels": labels, "ownerReferences": _owner(kafka)},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": {"strimzi.io/name": f"{name}-kafka"}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "automountServiceAccountToken": False, "enableServiceLinks": False,
                "nodeSelector": dict(NODE_SELECTOR),
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "kafka", "image": image, "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", script, str(KAFKA_PORT), host, port],
                    "ports": [{"name": "tcp-clients", "containerPort": KAFKA_PORT}],
                    "readinessProbe": {"tcpSocket": {"port": KAFKA_PORT}, "periodSeconds": 5},
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": restricted}]}}}}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{name}-kafka-bootstrap", "namespace": ns, "labels": labels,
                     "ownerReferences": _owner(kafka)},
        "spec": {"selector": {"strimzi.io/name": f"{name}-kafka"},
                 "ports": [{"name": "tcp-clients", "port": KAFKA_PORT, "targetPort": KAFKA_PORT}]}}
    return [deployment, service]
