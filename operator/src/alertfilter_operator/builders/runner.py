"""Builders of an AlertFilter's children in its own namespace: the ConfigMap with the source, the
filter-runner Deployment and the runner pods' NetworkPolicy.

Pure functions: typed values in (:class:`~.refs.FilterRef`, :class:`~.refs.PoolInfo`), manifest dict out.
"""

from __future__ import annotations

from typing import Any

from kubernetes.utils import parse_quantity

from alertfilter_operator.naming import FILTER_LABEL, METRICS_PORT, POOL_LABEL, SOURCE_HASH_ANNOTATION

from .env import FILTER_FILE, FILTER_FILE_DIR, runner_env
from .refs import KAFKA_PORT, FilterRef, PoolInfo

#: Default runner resources, from the density benchmark (bench/RESULTS.md, "density", 2026-12-03
#: 19:42 UTC; the runner and its filter process at Rubin's 256 alerts/s of 134 KB mean): CPU 126-152 m
#: per runner for the benchmark's mix (diaSource cuts 38-68 m, light curves 295-447 m, a cutout reader
#: 67-83 m), PSS at most 277 MiB and peak RSS at most 362 MiB. So requests of 150m and 384Mi: 100
#: runners on an m4.4xlarge (15 of its 16 vCPU, 37.5 of 64 GiB), twice the original design's 50
#: (DMTN-028). The limits bound what a filter that spins or allocates can take from its neighbours:
#: one core for the runner and its filter process together (a light curve at a 4x peak visit), and
#: 1Gi, nearly 3x the largest peak RSS measured. spec.resources overrides them.
DEFAULT_RUNNER_RESOURCES = {"requests": {"cpu": "150m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
#: The runner image's non-root user and group (runtime/Dockerfile).
RUNNER_UID = 10001


def build_configmap(f: FilterRef) -> dict[str, Any]:
    """The ConfigMap holding the filter source (mounted into the runner as ``/etc/alertfilter/filter.py``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f.runner_name,
            "namespace": f.namespace,
            "labels": f.labels(),
            "annotations": {SOURCE_HASH_ANNOTATION: f.source_sha256},
        },
        "data": {FILTER_FILE: f.spec.source},
    }


def _resources(f: FilterRef) -> dict[str, Any]:
    """The runner container's resources: the spec's, with every limit it leaves out filled in.

    A pod always gets a CPU and a memory limit (a filter must not take a whole node): a missing
    limit is the default one, raised to the request when the spec requests more.
    """
    if f.spec.resources is None:
        return {k: dict(v) for k, v in DEFAULT_RUNNER_RESOURCES.items()}
    out: dict[str, Any] = f.spec.resources.model_dump(exclude_none=True)
    requests, limits = out.get("requests", {}), out.setdefault("limits", {})
    for name, default in DEFAULT_RUNNER_RESOURCES["limits"].items():
        if name not in limits:
            asked = requests.get(name)
            limits[name] = asked if asked is not None and parse_quantity(asked) > parse_quantity(default) else default
    return out


def _strategy(f: FilterRef) -> dict[str, Any]:
    """How the runner pods are replaced. ``Recreate`` for a filter with a cap: every old pod has
    stopped (and committed its counts) before a new one starts, so two pods never count a visit
    apart, and a change between one replica (the cap in the runner) and several (a cap stage) hands
    the counts over; otherwise one pod at a time."""
    if f.capped or f.candidates:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}


def build_deployment(
    f: FilterRef,
    pool: PoolInfo,
    image: str,
    schema_registry: str | None = None,
    image_pull_policy: str = "IfNotPresent",
    schema_dir: str | None = None,
) -> dict[str, Any]:
    """The filter-runner Deployment.

    Pods run the runtime image's runner with the settings as environment variables and the source
    mounted from the ConfigMap; they carry the pool's nodeSelector and tolerations, spread across
    the pool's nodes, run with a restricted security context and no service-account token, and are
    probed on ``/healthz`` and ``/readyz``. The source hash annotation on the pod template makes a
    source change roll the pods. ``spec.suspend`` scales to zero.
    """
    labels = f.labels()
    selector = {
        "app.kubernetes.io/instance": f.name,
        "app.kubernetes.io/component": "filter-runner",
        FILTER_LABEL: f.name,
    }
    replicas = 0 if f.spec.suspend else f.spec.replicas
    probe = {
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 6,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f.runner_name,
            "namespace": f.namespace,
            "labels": labels,
            "annotations": {SOURCE_HASH_ANNOTATION: f.source_sha256},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": _strategy(f),
            "template": {
                "metadata": {
                    # The pool label lets a PodMonitor label the runner's metrics per pool (the chart's dashboard).
                    "labels": {**labels, **selector, POOL_LABEL: pool.name},
                    "annotations": {
                        SOURCE_HASH_ANNOTATION: f.source_sha256,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 60,
                    "nodeSelector": dict(pool.node_selector),
                    "tolerations": list(pool.tolerations),
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "runner",
                            "image": image,
                            "imagePullPolicy": image_pull_policy,
                            "args": ["run"],
                            "env": runner_env(f, pool, schema_registry, schema_dir),
                            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                            "resources": _resources(f),
                            "livenessProbe": probe,
                            "readinessProbe": {
                                **probe,
                                "httpGet": {"path": "/readyz", "port": "metrics"},
                                "failureThreshold": 3,
                            },
                            # a kubelet reports why the runner crashed (RunnerReady) from the end of its log
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "volumeMounts": [
                                {"name": "filter", "mountPath": FILTER_FILE_DIR, "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "filter", "configMap": {"name": f.runner_name}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def build_network_policy(f: FilterRef, pool: PoolInfo, schema_registry_port: int | None = None) -> dict[str, Any]:
    """The runner pods' NetworkPolicy: egress only to the pool's Kafka brokers and DNS (and the schema
    registry's port when one is configured); ingress only to the metrics port."""
    selector = {
        "app.kubernetes.io/instance": f.name,
        "app.kubernetes.io/component": "filter-runner",
        FILTER_LABEL: f.name,
    }
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": pool.kafka_namespace}},
                    "podSelector": {
                        "matchLabels": {"strimzi.io/cluster": pool.kafka_cluster, "strimzi.io/kind": "Kafka"}
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": KAFKA_PORT}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
    ]
    if schema_registry_port:
        egress.append({"ports": [{"protocol": "TCP", "port": schema_registry_port}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f.runner_name, "namespace": f.namespace, "labels": f.labels()},
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": METRICS_PORT}]}],
            "egress": egress,
        },
    }
