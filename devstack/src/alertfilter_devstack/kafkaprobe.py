"""Probes of what a Kafka principal may do on a broker, with real clients: connect, read a topic, write
one, create one, join a consumer group. The tests of the local brokers' ACLs use them.

Each probe returns ``"ok"`` or the name of the Kafka error that stopped it (``KafkaError.name()``,
e.g. ``"TOPIC_AUTHORIZATION_FAILED"``, ``"GROUP_AUTHORIZATION_FAILED"``, ``"_AUTHENTICATION"``), or
``"_TIMED_OUT"`` when nothing was decided within ``timeout_s`` seconds. ``config`` is librdkafka
settings: ``bootstrap.servers`` and, for an authenticated listener, ``security.protocol`` and
``sasl.*``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

# confluent_kafka.admin re-exports these from private modules without an __all__
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

OK = "ok"
TIMED_OUT = "_TIMED_OUT"
#: librdkafka's log level for probes: 0 keeps expected authentication failures out of the test output.
_QUIET = {"log_level": 0}


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].name())
    raise exc


def connect(config: Mapping[str, str], timeout_s: float = 10.0) -> str:
    """Fetch the cluster's metadata: ``"ok"``, or ``"_AUTHENTICATION"`` as soon as the broker refused
    the credentials."""
    errors: list[KafkaError] = []
    settings: dict[str, Any] = {**config, **_QUIET, "error_cb": errors.append}
    admin = AdminClient(settings)
    deadline = time.monotonic() + timeout_s
    last = TIMED_OUT
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
            return OK
        except KafkaException as exc:
            last = _error_name(exc)
        admin.poll(0.2)  # error_cb is served by poll: the authentication error, if that was it
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if auth:
            return str(auth[0].name())
    return last


def read(config: Mapping[str, str], topic: str, group: str, timeout_s: float = 15.0) -> str:
    """Fetch partition 0 of ``topic`` from its beginning, assigned (the group is not joined, no
    offset is committed; librdkafka still looks up the group's coordinator, so the principal needs
    Describe or Read on ``group``): ``"ok"`` once a message or the partition's end arrives."""
    c = Consumer({**config, **_QUIET, "group.id": group, "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        # A topic the principal may not even Describe is refused in the metadata, after which
        # librdkafka waits for a leader instead of fetching: report the refusal itself.
        try:
            md = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:  # e.g. _TRANSPORT: the credentials were refused
            return _error_name(exc)
        if md is not None and md.error is not None:
            return str(md.error.name())
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        return _first_outcome(c, timeout_s)
    finally:
        c.close()


def join(config: Mapping[str, str], topic: str, group: str, timeout_s: float = 30.0) -> str:
    """Join consumer group ``group`` subscribed to ``topic``, without committing: ``"ok"`` once the
    group assigns a partition (or a message arrives)."""
    assigned: list[TopicPartition] = []
    c = Consumer(
        {
            **config,
            **_QUIET,
            "group.id": group,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
    )
    try:
        c.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            err = m.error() if m is not None else None
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                return str(err.name())
            if assigned or (m is not None and err is None):
                return OK
        return TIMED_OUT
    finally:
        c.close()


def _first_outcome(c: Consumer, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m: Message | None = c.poll(0.5)
        if m is None:
            continue
        err = m.error()
        if err is None or err.code() == KafkaError._PARTITION_EOF:
            return OK
        return str(err.name())
    return TIMED_OUT


def write(config: Mapping[str, str], topic: str, timeout_s: float = 15.0) -> str:
    """Produce one small message to ``topic``: ``"ok"`` once the broker acknowledged it. The message
    stays in the topic when this succeeds (the tests expect a refusal)."""
    outcome: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        outcome.append(OK if err is None else str(err.name()))

    p = Producer({**config, **_QUIET, "message.timeout.ms": int(timeout_s * 1000)})
    try:
        p.produce(topic, b"probe", on_delivery=delivered)
    except KafkaException as exc:
        return _error_name(exc)
    p.flush(timeout_s + 5)
    return outcome[0] if outcome else TIMED_OUT


def create_topic(config: Mapping[str, str], topic: str, timeout_s: float = 15.0) -> str:
    """Create ``topic`` (1 partition, replication 1): ``"ok"`` when the broker created it."""
    admin = AdminClient({**config, **_QUIET})
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], request_timeout=timeout_s)
    try:
        fut[topic].result()
        return OK
    except KafkaException as exc:
        return _error_name(exc)
