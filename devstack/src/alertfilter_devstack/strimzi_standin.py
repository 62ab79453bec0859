"""A development stand-in for the Strimzi operators, for the local stack only (never in the chart).

``python -m alertfilter_devstack.strimzi_standin`` with ``KUBECONFIG``, ``DEVSTACK_WORKDIR`` and the
local brokers: ``DEVSTACK_CENTRAL_BOOTSTRAP`` (the broker the Strimzi ``Kafka`` named
``DEVSTACK_CENTRAL_NAME``, default ``central``, stands for: the Helm chart's central Kafka) and
``DEVSTACK_POOL_BOOTSTRAP`` (the broker every other ``Kafka`` stands for). With
``DEVSTACK_POOL_POD_TARGET`` (the pool broker's listener for pods, on the kind network's gateway)
and ``DEVSTACK_BROKER_IMAGE``, a pool ``Kafka`` gets broker pods and its bootstrap Service
(``brokerpod``), as Strimzi makes them.

- ``KafkaTopic`` → a real topic on its cluster's broker (partitions, replication 1, retention and
  max.message.bytes from the spec), status Ready; deleted with the resource.
- ``Kafka`` / ``KafkaNodePool`` → status Ready, the ``plain`` listener's address (the bootstrap
  Service for a pool Kafka with broker pods, else the local broker).
- ``KafkaUser`` → status Ready and the Secret with a generated password that Strimzi's User
  Operator would create (the local brokers do not authenticate; pools here use authentication none).
- ``KafkaMirrorMaker2`` → a real MirrorMaker 2 process (``org.apache.kafka.connect.mirror.MirrorMaker``
  from Maven Central's ``connect-mirror``) configured from the resource: source = each mirror's
  ``source.bootstrapServers``, target = the pool broker, topics = ``topicsPattern``, names kept
  (IdentityReplicationPolicy). It stops when the resource is deleted.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import kopf
import kubernetes
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from . import brokerpod
from .kafka import java_bin, kafka_libs
from .procs import stop_process

GROUP, VERSION = "kafka.strimzi.io", "v1"
PREFIX = "devstack.alerts.lsst.io"
_mirrors: dict[str, subprocess.Popen[bytes]] = {}


def _bootstrap() -> str:
    """The pool broker's address for host processes (topics, MirrorMaker 2's target)."""
    return os.environ["DEVSTACK_POOL_BOOTSTRAP"]


def _broker_for(cluster: str | None) -> str:
    """The local broker a Strimzi cluster name stands for."""
    if cluster and cluster == os.environ.get("DEVSTACK_CENTRAL_NAME", "central") and os.environ.get(
            "DEVSTACK_CENTRAL_BOOTSTRAP"):
        return os.environ["DEVSTACK_CENTRAL_BOOTSTRAP"]
    return _bootstrap()


def _ready(generation: int | None, **extra: Any) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": "True", "reason": "DevstackReady",
                            "lastTransitionTime": kopf_now()}], "observedGeneration": generation, **extra}


def kopf_now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = f"{PREFIX}/strimzi-standin"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300


@kopf.on.create(GROUP, VERSION, "kafkas")
@kopf.on.update(GROUP, VERSION, "kafkas")
@kopf.on.resume(GROUP, VERSION, "kafkas")
def kafka_ready(body: kopf.Body, meta: kopf.Meta, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    bootstrap = _broker_for(name)
    target, image = os.environ.get("DEVSTACK_POOL_POD_TARGET"), os.environ.get("DEVSTACK_BROKER_IMAGE")
    if bootstrap == _bootstrap() and target and image:
        _apply_broker_pods(dict(body), image, target)
        bootstrap = brokerpod.bootstrap_service(name, namespace)
    host, port = bootstrap.rsplit(":", 1)
    patch.status.update(_ready(meta.get("generation"), clusterId="devstack", kafkaVersion="4.1.1", listeners=[
        {"name": "plain", "bootstrapServers": bootstrap, "addresses": [{"host": host, "port": int(port)}]}]))


def _apply_broker_pods(kafka: dict[str, Any], image: str, target: str) -> None:
    """Create (or replace) the broker pods' Deployment and the bootstrap Service of a pool Kafka."""
    api = kubernetes.client.ApiClient()
    for obj in brokerpod.manifests(kafka, image, target):
        try:
            kubernetes.utils.create_from_dict(api, obj)
        except kubernetes.utils.FailToCreateError as exc:
            if any(e.status != 409 for e in exc.api_exceptions):
                raise kopf.TemporaryError(f"creating {obj['kind']} {obj['metadata']['name']}: {exc}", delay=5)


@kopf.on.create(GROUP, VERSION, "kafkanodepools")
@kopf.on.resume(GROUP, VERSION, "kafkanodepools")
def nodepool_ready(meta: kopf.Meta, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    patch.status.update({"observedGeneration": meta.get("generation"), "replicas": spec.get("replicas", 1),
                         "nodeIds": list(range(spec.get("replicas", 1))), "roles": spec.get("roles", [])})


@kopf.on.create(GROUP, VERSION, "kafkatopics")
@kopf.on.update(GROUP, VERSION, "kafkatopics")
@kopf.on.resume(GROUP, VERSION, "kafkatopics")
def topic_apply(meta: kopf.Meta, spec: kopf.Spec, name: str, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    topic = spec.get("topicName") or name
    broker = _broker_for((meta.get("labels") or {}).get("strimzi.io/cluster"))
    config = {k: str(v) for k, v in (spec.get("config") or {}).items() if k in ("retention.ms", "max.message.bytes",
                                                                               "cleanup.policy")}
    admin = AdminClient({"bootstrap.servers": broker, "log_level": 3})
    if topic not in admin.list_topics(timeout=10).topics:
        fut = admin.create_topics([NewTopic(topic, num_partitions=int(spec.get("partitions") or 1),
                                            replication_factor=1, config=config)])[topic]
        try:
            fut.result()
            logger.info("created topic %s on %s", topic, broker)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise kopf.TemporaryError(f"creating topic {topic}: {exc}", delay=5)
    patch.status.update(_ready(meta.get("generation"), topicName=topic))


@kopf.on.delete(GROUP, VERSION, "kafkatopics")
def topic_delete(meta: kopf.Meta, spec: kopf.Spec, name: str, logger: kopf.Logger, **_: Any) -> None:
    topic = spec.get("topicName") or name
    admin = AdminClient({"bootstrap.servers": _broker_for((meta.get("labels") or {}).get("strimzi.io/cluster")),
                         "log_level": 3})
    try:
        admin.delete_topics([topic])[topic].result()
        logger.info("deleted topic %s", topic)
    except KafkaException as exc:
        if "UNKNOWN_TOPIC" not in str(exc):
            raise kopf.TemporaryError(f"deleting topic {topic}: {exc}", delay=5)


@kopf.on.create(GROUP, VERSION, "kafkausers")
@kopf.on.resume(GROUP, VERSION, "kafkausers")
def user_ready(meta: kopf.Meta, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    core = kubernetes.client.CoreV1Api()
    password = secrets.token_urlsafe(24)
    body = {"metadata": {"name": name, "namespace": namespace, "labels": {"strimzi.io/kind": "KafkaUser",
                                                                          "strimzi.io/cluster": (meta.get("labels") or {}).get("strimzi.io/cluster", "")}},
            "data": {"password": base64.b64encode(password.encode()).decode()}}
    try:
        core.create_namespaced_secret(namespace, body)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    patch.status.update(_ready(meta.get("generation"), username=name, secret=name))


def _mm2_properties(name: str, spec: dict[str, Any], workdir: Path) -> Path:
    target = spec["target"]["alias"]
    lines = [f"clusters = {', '.join([target] + [m['source']['alias'] for m in spec['mirrors']])}",
             f"{target}.bootstrap.servers = {_bootstrap()}",
             "replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
             "replication.factor = 1", "checkpoints.topic.replication.factor = 1", "heartbeats.topic.replication.factor = 1",
             "offset-syncs.topic.replication.factor = 1", "offset.storage.replication.factor = 1",
             "status.storage.replication.factor = 1", "config.storage.replication.factor = 1",
             "emit.heartbeats.enabled = false", "emit.checkpoints.enabled = false", "sync.topic.acls.enabled = false",
             "refresh.topics.interval.seconds = 5", "sync.topic.configs.enabled = false",
             f"{target}.producer.max.request.size = 10485760", f"{target}.producer.linger.ms = 5",
             "dedicated.mode.enable.internal.rest = false"]
    for m in spec["mirrors"]:
        src = m["source"]["alias"]
        lines += [f"{src}.bootstrap.servers = {m['source']['bootstrapServers']}",
                  f"{src}->{target}.enabled = true", f"{src}->{target}.topics = {m.get('topicsPattern', '.*')}",
                  f"{src}.consumer.max.partition.fetch.bytes = 10485760", f"{src}.consumer.auto.offset.reset = earliest",
                  f"tasks.max = {(m.get('sourceConnector') or {}).get('tasksMax', 1)}"]
    path = workdir / f"{name}.properties"
    path.write_text("\n".join(lines) + "\n")
    return path


@kopf.on.create(GROUP, VERSION, "kafkamirrormaker2s")
@kopf.on.update(GROUP, VERSION, "kafkamirrormaker2s", field="spec")
@kopf.on.resume(GROUP, VERSION, "kafkamirrormaker2s")
def mirror_start(meta: kopf.Meta, spec: kopf.Spec, name: str, namespace: str, patch: kopf.Patch,
                 logger: kopf.Logger, **_: Any) -> None:
    key = f"{namespace}/{name}"
    old = _mirrors.pop(key, None)
    if old is not None:
        stop_process(old, grace_s=20)
    workdir = Path(os.environ.get("DEVSTACK_WORKDIR", ".")) / "mirrormaker2"
    workdir.mkdir(parents=True, exist_ok=True)
    props = _mm2_properties(f"{namespace}-{name}", dict(spec), workdir)
    log4j = workdir / "log4j2.properties"
    log4j.write_text("rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\nappender.out.type=Console\n"
                     "appender.out.name=OUT\nappender.out.layout.type=PatternLayout\n"
                     "appender.out.layout.pattern=[%d] %p %m (%c)%n\n"
                     "logger.mm.name=org.apache.kafka.connect.mirror\nlogger.mm.level=INFO\n")
    logf = open(workdir / f"{namespace}-{name}.log", "ab")
    proc = subprocess.Popen([java_bin(), "-Xmx512m", "-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={log4j}",
                             "-cp", f"{kafka_libs()}/*", "org.apache.kafka.connect.mirror.MirrorMaker", str(props)],
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _mirrors[key] = proc
    (workdir / f"{namespace}-{name}.pid").write_text(str(proc.pid))
    logger.info("MirrorMaker 2 started (pid %d): %s", proc.pid, props)
    patch.status.update(_ready(meta.get("generation"), replicas=spec.get("replicas", 1)))


@kopf.on.delete(GROUP, VERSION, "kafkamirrormaker2s")
def mirror_stop(name: str, namespace: str, logger: kopf.Logger, **_: Any) -> None:
    proc = _mirrors.pop(f"{namespace}/{name}", None)
    if proc is not None:
        stop_process(proc, grace_s=20)
        logger.info("MirrorMaker 2 stopped")


@kopf.on.cleanup()
def stop_mirrors(**_: Any) -> None:
    for key in list(_mirrors):
        stop_process(_mirrors.pop(key), grace_s=20)


def main() -> int:
    import asyncio

    kubernetes.config.load_kube_config()
    kopf.configure(verbose=False)
    asyncio.run(kopf.operator(clusterwide=True, standalone=True,
                              liveness_endpoint=os.environ.get("DEVSTACK_STANDIN_LIVENESS")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
