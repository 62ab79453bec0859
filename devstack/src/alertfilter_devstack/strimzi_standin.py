"""A development stand-in for the Strimzi operators, for the local stack only (never in the chart).

``python -m alertfilter_devstack.strimzi_standin`` with ``KUBECONFIG``, ``DEVSTACK_WORKDIR`` and the
local brokers: ``DEVSTACK_CENTRAL_BOOTSTRAP`` (the broker the Strimzi ``Kafka`` named
``DEVSTACK_CENTRAL_NAME``, default ``central``, stands for: the Helm chart's central Kafka) and
``DEVSTACK_POOL_BOOTSTRAP`` (the broker every other ``Kafka`` stands for). With
``DEVSTACK_POOL_POD_TARGET`` (the pool broker's listener for pods, on the kind network's gateway)
and ``DEVSTACK_BROKER_IMAGE``, a pool ``Kafka`` gets broker pods and its bootstrap Service
(``brokerpod``), as Strimzi makes them. With ``DEVSTACK_CREDENTIALS`` (the brokers' super users,
``kafkaauth``) the stand-in and MirrorMaker 2 authenticate with SASL SCRAM-SHA-512 as super users
(``standin_kafka``).

- ``KafkaTopic`` → a real topic on its cluster's broker (partitions, replication 1, retention and
  max.message.bytes from the spec), status Ready; deleted with the resource.
- ``Kafka`` / ``KafkaNodePool`` → status Ready, the ``plain`` listener's address (the bootstrap
  Service for a pool Kafka with broker pods, else the local broker).
- ``KafkaUser`` → what Strimzi's User Operator does (``standin_users``): a SCRAM-SHA-512
  credential and exactly the listed ACLs on the broker, the Secret with the password, status Ready;
  removed with the resource.
- ``KafkaMirrorMaker2`` → a real MirrorMaker 2 process (``org.apache.kafka.connect.mirror.MirrorMaker``
  from Maven Central's ``connect-mirror``) configured from the resource: source = each mirror's
  ``source.bootstrapServers``, target = the pool broker, topics = ``topicsPattern``, names kept
  (IdentityReplicationPolicy). It authenticates to both brokers as the MirrorMaker 2 super user
  (the resource's own ``authentication`` is not used: the mirror's KafkaUser gets its credential and
  ACLs all the same). It stops when the resource is deleted.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import kopf
import kubernetes
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from . import (
    brokerpod,
    standin_users,  # noqa: F401 - importing it registers the KafkaUser handlers with kopf
)
from .kafka import java_bin, kafka_libs
from .procs import stop_process
from .standin_kafka import GROUP, VERSION, broker_for, client_config, mirror_client_properties
from .standin_kafka import pool_bootstrap as _bootstrap
from .standin_kafka import ready as _ready

PREFIX = "devstack.alerts.lsst.io"
_mirrors: dict[str, subprocess.Popen[bytes]] = {}


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
    bootstrap = broker_for(name)
    target, image = os.environ.get("DEVSTACK_POOL_POD_TARGET"), os.environ.get("DEVSTACK_BROKER_IMAGE")
    if bootstrap == _bootstrap() and target and image:
        _apply_broker_pods(dict(body), image, target)
        bootstrap = brokerpod.bootstrap_service(name, namespace)
    host, port = bootstrap.rsplit(":", 1)
    patch.status.update(_ready(meta.get("generation"), clusterId="devstack", kafkaVersion="4.1.1", listeners=[
        {"name": "plain", "bootstrapServers": bootstrap, "addresses": [{"host": host, "port": int(port)}]}]))


def _apply_broker_pods(kafka: dict[str, Any], image: str, target: str) -> None:
    """Create (or update) the broker pods' Deployment and the bootstrap Service of a pool Kafka.

    An existing one is patched: it may forward to another broker (one started before, on another port).
    """
    api = kubernetes.client.ApiClient()
    for obj in brokerpod.manifests(kafka, image, target):
        name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
        try:
            kubernetes.utils.create_from_dict(api, obj)
        except kubernetes.utils.FailToCreateError as exc:
            if any(e.status != 409 for e in exc.api_exceptions):
                raise kopf.TemporaryError(f"creating {obj['kind']} {name}: {exc}", delay=5) from exc
            if obj["kind"] == "Deployment":
                kubernetes.client.AppsV1Api(api).patch_namespaced_deployment(name, ns, obj)
            else:
                kubernetes.client.CoreV1Api(api).patch_namespaced_service(name, ns, obj)


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
    broker = broker_for((meta.get("labels") or {}).get("strimzi.io/cluster"))
    config = {k: str(v) for k, v in (spec.get("config") or {}).items() if k in ("retention.ms", "max.message.bytes",
                                                                               "cleanup.policy")}
    admin = AdminClient(client_config(broker))
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
    admin = AdminClient(client_config(broker_for((meta.get("labels") or {}).get("strimzi.io/cluster"))))
    try:
        admin.delete_topics([topic])[topic].result()
        logger.info("deleted topic %s", topic)
    except KafkaException as exc:
        if "UNKNOWN_TOPIC" not in str(exc):
            raise kopf.TemporaryError(f"deleting topic {topic}: {exc}", delay=5)


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
    # every client of both clusters (admin, consumer, producer) as MirrorMaker 2's super user
    auth = mirror_client_properties()
    lines += [f"{target}.{k} = {v}" for k, v in auth.items()]
    for m in spec["mirrors"]:
        src = m["source"]["alias"]
        lines += [f"{src}.{k} = {v}" for k, v in auth.items()]
        lines += [f"{src}.bootstrap.servers = {m['source']['bootstrapServers']}",
                  f"{src}->{target}.enabled = true", f"{src}->{target}.topics = {m.get('topicsPattern', '.*')}",
                  f"{src}.consumer.max.partition.fetch.bytes = 10485760", f"{src}.consumer.auto.offset.reset = earliest",
                  f"tasks.max = {(m.get('sourceConnector') or {}).get('tasksMax', 1)}"]
    path = workdir / f"{name}.properties"
    path.touch(mode=0o600)  # it holds a password
    path.chmod(0o600)
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
