"""Builders of an AlertFilter's children on its pool's Kafka: the output, dead-letter and
candidates ``KafkaTopic``s, the runner's ``KafkaUser`` with its ACLs, and the copy of its password.

Pure functions: typed values in (:class:`~.refs.FilterRef`, :class:`~.refs.PoolInfo`), manifest dict out.
"""

from __future__ import annotations

from typing import Any

from alertfilter.candidates import CANDIDATES_PARTITIONS
from alertfilter_operator.naming import TOPIC_KEY_LABEL, topic_key

from .refs import STRIMZI_API, FilterRef, PoolInfo


def _topic(f: FilterRef, pool: PoolInfo, resource_name: str, topic: str, component: str) -> dict[str, Any]:
    out = f.spec.output
    replicas = out.replicas or min(3, pool.kafka_replicas)
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": {
            "name": resource_name,
            "namespace": pool.kafka_namespace,
            "labels": {**f.outside_labels(pool, component), TOPIC_KEY_LABEL: topic_key(topic)},
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
    return _topic(f, pool, f.output_topic_resource, f.output_topic, "output-topic")


def build_dead_letter_topic(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The Strimzi KafkaTopic of the filter's dead letters (alerts that could not be filtered)."""
    return _topic(f, pool, f.dead_letter_topic_resource, f.dead_letter_topic, "dead-letter-topic")


#: Longest retention of a candidates topic, ms: the cap stage reads candidates seconds after they
#: are written; a day covers a stage stopped overnight.
CANDIDATES_RETENTION_MS = 24 * 3600 * 1000
#: Room for a candidate's own headers beyond the output's largest record, bytes.
CANDIDATES_HEADER_ROOM = 64 * 1024


def build_candidates_topic(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The Strimzi KafkaTopic of the filter's candidates: the accepted alerts of every replica, keyed
    by visit, that the cap stage caps and forwards (``alertfilter.capstage``). Always
    ``CANDIDATES_PARTITIONS`` partitions (more would move visits between partitions mid-visit),
    the output's retention up to a day, the output's largest record plus room for the candidate's headers."""
    topic = _topic(f, pool, f.candidates_topic, f.candidates_topic, "candidates-topic")
    topic["spec"]["partitions"] = CANDIDATES_PARTITIONS
    config = topic["spec"]["config"]
    config["retention.ms"] = min(config["retention.ms"], CANDIDATES_RETENTION_MS)
    config["max.message.bytes"] = config["max.message.bytes"] + CANDIDATES_HEADER_ROOM
    return topic


def build_kafka_user(f: FilterRef, pool: PoolInfo) -> dict[str, Any]:
    """The Strimzi KafkaUser of the runner (SCRAM-SHA-512).

    ACLs allow exactly: Read and Describe on the input topic (the full stream; and the pool's lean
    topic when the filter reads it: it then fetches accepted alerts' originals from the full stream,
    and never writes the lean topic); Read on the filter's consumer group;
    Write and Describe on its output and dead-letter topics; and Write and Describe on its
    transactional ids (prefix ``alertfilter-<group>``); with a candidates topic, Read, Write and
    Describe on it and Read on the cap stage's group (``<group>.cap``). Every name comes from the filter's own
    identity (:class:`~.refs.FilterRef`), never from another object, so a user cannot widen them: exactly-once batches use them, and so does
    the runner's watchdog when it commits past a filter stuck in C code.
    """

    def acl(rtype: str, name: str, ops: list[str], pattern: str = "literal") -> dict[str, Any]:
        return {"resource": {"type": rtype, "name": name, "patternType": pattern}, "operations": ops}

    acls = [
        acl("topic", pool.input_topic, ["Read", "Describe"]),
        *([acl("topic", f.input_topic(pool), ["Read", "Describe"])] if f.input_topic(pool) != pool.input_topic else []),
        acl("group", f.group, ["Read"]),
        acl("topic", f.output_topic, ["Write", "Describe"]),
        acl("topic", f.dead_letter_topic, ["Write", "Describe"]),
    ]
    if f.candidates:  # the replicas write it, their cap stages read it
        acls += [acl("topic", f.candidates_topic, ["Read", "Write", "Describe"]), acl("group", f.cap_group, ["Read"])]
    acls.append(acl("transactionalId", f.transactional_id_prefix, ["Write", "Describe"], "prefix"))
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
