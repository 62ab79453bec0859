"""Pure builders of the objects the operator applies: typed spec in, manifest dict out.

No API calls here; the handlers fetch, call these, apply and write status. Every builder is
unit-tested without a cluster, and the cluster tests check that the API server (with Strimzi's
CRDs) accepts what they build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import AlertFilterSpec, FilterPoolSpec, pool_kafka_name
from .naming import (
    FILTER_LABEL,
    METRICS_PORT,
    POOL_LABEL,
    SOURCE_HASH_ANNOTATION,
    common_labels,
    consumer_group,
    dead_letter_topic,
    kafka_child_name,
    output_topic,
    owner_labels,
    runner_name,
)

STRIMZI_API = "kafka.strimzi.io/v1"
#: Client port of the pool-local Kafka's internal listener.
KAFKA_PORT = 9092
FILTER_FILE_DIR = "/etc/alertfilter"
FILTER_FILE = "filter.py"
#: Default runner resources: 50 runners x (250m, 1Gi) = 12.5 vCPU, 50 GiB, inside an m4.4xlarge
#: (16 vCPU, 64 GiB) with room for the kubelet and system pods; the original design ran 20-50 per node (DMTN-028).
DEFAULT_RUNNER_RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "1536Mi"}}
RUNNER_UID = 10001


@dataclass(frozen=True)
class PoolInfo:
    """What a filter needs to know of its pool.

    Attributes:
        name: the FilterPool's name.
        kafka_cluster: name of the pool-local Strimzi Kafka.
        kafka_namespace: its namespace.
        bootstrap: bootstrap address of its internal listener.
        input_topic: the mirrored full-stream topic.
        node_selector, tolerations: where the pool's pods go.
        kafka_replicas: broker count (bounds topic replication).
        authentication: ``scram-sha-512`` or ``none``.
    """

    name: str
    kafka_cluster: str
    kafka_namespace: str
    bootstrap: str
    input_topic: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    kafka_replicas: int = 3
    authentication: str = "scram-sha-512"

    @classmethod
    def from_spec(cls, name: str, spec: FilterPoolSpec, kafka_status: dict[str, Any] | None = None) -> PoolInfo:
        """``kafka_status``: the pool Kafka's ``status``; its ``plain`` listener's ``bootstrapServers``,
        when Strimzi has published it, wins over the conventional service name."""
        cluster = pool_kafka_name(name, spec)
        ns = spec.kafka.namespace
        bootstrap = f"{cluster}-kafka-bootstrap.{ns}.svc:{KAFKA_PORT}"
        for listener in (kafka_status or {}).get("listeners") or []:
            if listener.get("name") == "plain" and listener.get("bootstrapServers"):
                bootstrap = listener["bootstrapServers"]
        return cls(
            name=name,
            kafka_cluster=cluster,
            kafka_namespace=ns,
            bootstrap=bootstrap,
            input_topic=spec.mirror.topic,
            node_selector=dict(spec.nodeSelector),
            tolerations=[t.model_dump(exclude_none=True) for t in spec.tolerations],
            kafka_replicas=spec.kafka.replicas,
            authentication=spec.kafka.authentication,
        )


@dataclass(frozen=True)
class FilterRef:
    """The AlertFilter being reconciled: identity and parsed spec."""

    namespace: str
    name: str
    uid: str
    spec: AlertFilterSpec
    source_sha256: str

    @property
    def output_topic(self) -> str:
        return output_topic(self.namespace, self.name, self.spec.output.topic)

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.output_topic)

    @property
    def group(self) -> str:
        return consumer_group(self.namespace, self.name)

    @property
    def runner_name(self) -> str:
        return runner_name(self.name)

    @property
    def kafka_user(self) -> str:
        return kafka_child_name(self.namespace, self.name)

    @property
    def credentials_secret(self) -> str:
        return f"{self.runner_name}-kafka"

    def labels(self, component: str = "filter-runner") -> dict[str, str]:
        return {**common_labels(component, self.name), FILTER_LABEL: self.name}

    def outside_labels(self, pool: PoolInfo, component: str) -> dict[str, str]:
        """Labels of children in the Kafka namespace: Strimzi's cluster label and the owner's identity."""
        return {
            **common_labels(component, f"{self.namespace}.{self.name}"),
            **owner_labels("AlertFilter", self.namespace, self.name, self.uid),
            "strimzi.io/cluster": pool.kafka_cluster,
            POOL_LABEL: pool.name,
        }


# --- AlertFilter children ------------------------------------------------------------------------
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


def _topic(f: FilterRef, pool: PoolInfo, resource_name: str, topic: str, component: str) -> dict[str, Any]:
    out = f.spec.output
    replicas = out.replicas or min(3, pool.kafka_replicas)
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": {
            "name": resource_name,
            "namespace": pool.kafka_namespace,
            "labels": f.outside_labels(pool, component),
        },
        "spec": {
            "topicName": topic,
            "partitions": out.partitions,
            "replicas": replicas,
            "config": {
                "retention.ms": out.retentionMs,
                "max.message.bytes": out.maxMessageBytes,
                "min.insync.replicas": min(2, replicas),
                "cleanup.policy": "delete",
            },
        },
    }


def build_output_topic(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The Strimzi KafkaTopic of the filter's output (accepted alerts)."""
    return _topic(f, pool, kafka_child_name(f.namespace, f.name), f.output_topic, "output-topic")


def build_dead_letter_topic(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The Strimzi KafkaTopic of the filter's dead letters (alerts that could not be filtered)."""
    return _topic(f, pool, kafka_child_name(f.namespace, f.name, "dlq"), f.dead_letter_topic, "dead-letter-topic")


def build_kafka_user(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The Strimzi KafkaUser of the runner (SCRAM-SHA-512).

    ACLs allow exactly: Read and Describe on the input topic; Read on the filter's consumer group;
    Write and Describe on its output and dead-letter topics; and Write and Describe on its
    transactional ids (prefix ``alertfilter-<group>``): exactly-once batches use them, and so does
    the runner's watchdog when it commits past a filter stuck in C code.
    """

    def acl(rtype: str, name: str, ops: list[str], pattern: str = "literal") -> dict[str, Any]:
        return {"resource": {"type": rtype, "name": name, "patternType": pattern}, "operations": ops}

    acls = [
        acl("topic", pool.input_topic, ["Read", "Describe"]),
        acl("group", f.group, ["Read"]),
        acl("topic", f.output_topic, ["Write", "Describe"]),
        acl("topic", f.dead_letter_topic, ["Write", "Describe"]),
    ]
    acls.append(acl("transactionalId", f"alertfilter-{f.group}", ["Write", "Describe"], "prefix"))
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {
            "name": f.kafka_user,
            "namespace": pool.kafka_namespace,
            "labels": f.outside_labels(pool, "kafka-user"),
        },
        "spec": {"authentication": {"type": "scram-sha-512"}, "authorization": {"type": "simple", "acls": acls}},
    }


def build_credentials_secret(f: FilterRef, password: str) -> dict[str, Any]:
    """A copy, in the filter's namespace, of the password Strimzi generated for the runner's KafkaUser."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": f.credentials_secret, "namespace": f.namespace, "labels": f.labels()},
        "stringData": {"username": f.kafka_user, "password": password},
    }


def _resources(f: FilterRef) -> dict[str, Any]:
    if f.spec.resources is None:
        return {k: dict(v) for k, v in DEFAULT_RUNNER_RESOURCES.items()}
    return f.spec.resources.model_dump(exclude_none=True)


def runner_env(
    f: FilterRef, pool: PoolInfo, schema_registry: str | None = None, schema_dir: str | None = None
) -> list[dict[str, Any]]:
    """The runner's settings as ``ALERTFILTER_*`` environment variables (see ``alertfilter run --help``)."""
    s = f.spec
    env = {
        "ALERTFILTER_FILTER": f"{FILTER_FILE_DIR}/{FILTER_FILE}",
        "ALERTFILTER_NAME": f.name,
        "ALERTFILTER_BOOTSTRAP_SERVERS": pool.bootstrap,
        "ALERTFILTER_INPUT": pool.input_topic,
        "ALERTFILTER_OUTPUT": f.output_topic,
        "ALERTFILTER_DEAD_LETTER_TOPIC": f.dead_letter_topic,
        "ALERTFILTER_GROUP": f.group,
        "ALERTFILTER_VISIT_FIELD": s.visitField,
        "ALERTFILTER_ID_FIELD": s.idField,
        "ALERTFILTER_FILTER_TIMEOUT": f"{s.filterTimeoutSeconds:g}",
        "ALERTFILTER_MAX_MESSAGE_BYTES": str(s.output.maxMessageBytes),
        "ALERTFILTER_METRICS_PORT": str(METRICS_PORT),
        "ALERTFILTER_LOG_FORMAT": "json",
    }
    if s.maxAlertsPerVisit:
        env["ALERTFILTER_MAX_ALERTS_PER_VISIT"] = str(s.maxAlertsPerVisit)
    else:
        env["ALERTFILTER_NO_VISIT_CAP"] = "true"
    if s.entrypoint:
        env["ALERTFILTER_ENTRYPOINT"] = s.entrypoint
    if s.exactlyOnce:
        env["ALERTFILTER_EXACTLY_ONCE"] = "true"
    if schema_registry:
        env["ALERTFILTER_SCHEMA_REGISTRY"] = schema_registry
    elif schema_dir:
        env["ALERTFILTER_SCHEMA_DIR"] = schema_dir
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    if pool.authentication == "scram-sha-512":
        out += [
            {"name": "ALERTFILTER_KAFKA_SECURITY_PROTOCOL", "value": "SASL_PLAINTEXT"},
            {"name": "ALERTFILTER_KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
            {"name": "ALERTFILTER_KAFKA_SASL_USERNAME", "value": f.kafka_user},
            {
                "name": "ALERTFILTER_KAFKA_SASL_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": f.credentials_secret, "key": "password"}},
            },
        ]
    return out


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
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {
                "metadata": {
                    "labels": {**labels, **selector},
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


# --- FilterPool children -------------------------------------------------------------------------
def _pool_labels(pool_name: str, uid: str, component: str, cluster: str | None = None) -> dict[str, str]:
    labels = {
        **common_labels(component, pool_name),
        **owner_labels("FilterPool", None, pool_name, uid),
        POOL_LABEL: pool_name,
    }
    if cluster:
        labels["strimzi.io/cluster"] = cluster
    return labels


def _node_affinity(node_selector: dict[str, str]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": k, "operator": "In", "values": [v]} for k, v in sorted(node_selector.items())
                        ]
                    }
                ]
            }
        }
    }


def build_pool_kafka(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The pool-local Strimzi ``Kafka`` (KRaft; brokers come from the KafkaNodePool)."""
    cluster = pool_kafka_name(name, spec)
    r = spec.kafka.replicas
    listener: dict[str, Any] = {"name": "plain", "port": KAFKA_PORT, "type": "internal", "tls": False}
    kafka: dict[str, Any] = {
        "listeners": [listener],
        "config": {
            "offsets.topic.replication.factor": min(3, r),
            "transaction.state.log.replication.factor": min(3, r),
            "transaction.state.log.min.isr": min(2, r),
            "default.replication.factor": min(3, r),
            "min.insync.replicas": min(2, r),
            # a forwarded alert keeps its original bytes: topics must take the largest alert
            "message.max.bytes": 10 * 1024 * 1024,
            "replica.fetch.max.bytes": 10 * 1024 * 1024,
        },
    }
    if spec.kafka.authentication == "scram-sha-512":
        listener["authentication"] = {"type": "scram-sha-512"}
        kafka["authorization"] = {"type": "simple"}
    return {
        "apiVersion": STRIMZI_API,
        "kind": "Kafka",
        "metadata": {
            "name": cluster,
            "namespace": spec.kafka.namespace,
            "labels": _pool_labels(name, uid, "pool-kafka"),
        },
        "spec": {"kafka": kafka, "entityOperator": {"topicOperator": {}, "userOperator": {}}},
    }


def build_pool_node_pool(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The ``KafkaNodePool`` of the pool-local Kafka: combined controller+broker nodes pinned to the pool's nodes."""
    cluster = pool_kafka_name(name, spec)
    st = spec.kafka.storage
    if st.type == "ephemeral":
        storage: dict[str, Any] = {"type": "ephemeral"}
    else:
        volume: dict[str, Any] = {
            "id": 0,
            "type": "persistent-claim",
            "size": st.size,
            "deleteClaim": st.deleteClaim,
            "kraftMetadata": "shared",
        }
        if st.storageClass:
            volume["class"] = st.storageClass
        storage = {"type": "jbod", "volumes": [volume]}
    body: dict[str, Any] = {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaNodePool",
        "metadata": {
            "name": f"{cluster}-nodes",
            "namespace": spec.kafka.namespace,
            "labels": _pool_labels(name, uid, "pool-kafka", cluster),
        },
        "spec": {
            "replicas": spec.kafka.replicas,
            "roles": ["controller", "broker"],
            "storage": storage,
            "template": {
                "pod": {
                    "affinity": _node_affinity(spec.nodeSelector),
                    "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
                }
            },
        },
    }
    if spec.kafka.resources is not None:
        body["spec"]["resources"] = spec.kafka.resources.model_dump(exclude_none=True)
    return body


def mirror_user_name(name: str, spec: FilterPoolSpec) -> str:
    return f"{pool_kafka_name(name, spec)}-mirror"


def build_mirror_user(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The KafkaUser MirrorMaker 2 writes to the pool-local Kafka with: the mirrored topic and its
    own Connect storage topics and group."""
    cluster = pool_kafka_name(name, spec)
    prefix = f"{cluster}-mirror"

    def acl(rtype: str, rname: str, pattern: str = "literal") -> dict[str, Any]:
        return {"resource": {"type": rtype, "name": rname, "patternType": pattern}, "operations": ["All"]}

    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {
            "name": mirror_user_name(name, spec),
            "namespace": spec.kafka.namespace,
            "labels": _pool_labels(name, uid, "mirror", cluster),
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    acl("topic", spec.mirror.topic),
                    acl("topic", prefix, "prefix"),
                    acl("group", prefix),
                    {"resource": {"type": "cluster"}, "operations": ["Describe", "DescribeConfigs"]},
                ],
            },
        },
    }


def build_mirror_maker2(name: str, uid: str, spec: FilterPoolSpec) -> dict[str, Any]:
    """The ``KafkaMirrorMaker2`` (v1 shape) copying the full alert stream from the central Kafka to the
    pool-local one, keeping topic names (``IdentityReplicationPolicy``), pinned to the pool's nodes."""
    cluster = pool_kafka_name(name, spec)
    ns = spec.kafka.namespace
    prefix = f"{cluster}-mirror"
    target: dict[str, Any] = {
        "alias": cluster,
        "bootstrapServers": f"{cluster}-kafka-bootstrap.{ns}.svc:{KAFKA_PORT}",
        "groupId": prefix,
        "configStorageTopic": f"{prefix}-configs",
        "statusStorageTopic": f"{prefix}-status",
        "offsetStorageTopic": f"{prefix}-offsets",
        "config": {
            "config.storage.replication.factor": -1,
            "offset.storage.replication.factor": -1,
            "status.storage.replication.factor": -1,
            "producer.max.request.size": 10 * 1024 * 1024,
        },
    }
    if spec.kafka.authentication == "scram-sha-512":
        target["authentication"] = {
            "type": "scram-sha-512",
            "username": mirror_user_name(name, spec),
            "passwordSecret": {"secretName": mirror_user_name(name, spec), "password": "password"},
        }
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaMirrorMaker2",
        "metadata": {"name": prefix, "namespace": ns, "labels": _pool_labels(name, uid, "mirror", cluster)},
        "spec": {
            "replicas": spec.mirror.replicas,
            "target": target,
            "mirrors": [
                {
                    "source": {
                        "alias": spec.mirror.sourceCluster,
                        "bootstrapServers": spec.mirror.sourceBootstrapServers,
                    },
                    "sourceConnector": {
                        "tasksMax": spec.mirror.tasksMax,
                        "config": {
                            "replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
                            "replication.factor": -1,
                            "offset-syncs.topic.replication.factor": -1,
                            "sync.topic.acls.enabled": "false",
                            "sync.topic.configs.enabled": "true",
                            "refresh.topics.interval.seconds": 60,
                        },
                    },
                    "topicsPattern": spec.mirror.topic,
                }
            ],
            "template": {
                "pod": {
                    "affinity": _node_affinity(spec.nodeSelector),
                    "tolerations": [t.model_dump(exclude_none=True) for t in spec.tolerations],
                }
            },
        },
    }
