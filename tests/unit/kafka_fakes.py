"""Fake Kafka clients and messages for the runner's unit tests (the runner takes its clients as
arguments, so these stand in for confluent-kafka's without patching anything)."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import fastavro
from confluent_kafka import KafkaError, KafkaException, TopicPartition

SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "A",
        "fields": [
            {"name": "diaSourceId", "type": "long"},
            {"name": "pad", "type": "bytes"},
            {
                "name": "diaSource",
                "type": {"type": "record", "name": "S", "fields": [{"name": "visit", "type": "long"}]},
            },
        ],
    }
)


def container(i: int, visit: int = 1, pad: int = 0) -> bytes:
    bio = io.BytesIO()
    fastavro.writer(bio, SCHEMA, [{"diaSourceId": i, "pad": b"x" * pad, "diaSource": {"visit": visit}}])
    return bio.getvalue()


class Msg:
    def __init__(
        self,
        offset: int,
        value: bytes | None,
        partition: int = 0,
        topic: str = "in",
        headers: list[tuple[str, bytes]] | None = None,
        key: bytes | None = None,
    ) -> None:
        self._o, self._v, self._p, self._t, self._h, self._k = offset, value, partition, topic, headers, key

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._h

    def error(self) -> None:
        return None


class FakeConsumer:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.commits: list[list[TopicPartition]] = []
        self.commit_errors: list[KafkaError] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.committed_meta: dict[int, str] = {}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> list[TopicPartition]:
        self.commits.append(offsets)
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))
        return offsets

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, 10, self.committed_meta.get(p.partition, "")) for p in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def consumer_group_metadata(self) -> bytes:
        return b"cgmd"

    def close(self) -> None:
        pass


class Delivered:
    def __init__(self, topic: str, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
        self._topic, self.value, self.headers = topic, value, dict(headers)

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Refuses records over ``message.max.bytes`` at once, and (like a broker) records over
    ``topic_limits[topic]`` when flushed."""

    topic_limits: ClassVar[dict[str, int]] = {}

    def __init__(self, conf: dict[str, Any]) -> None:
        self.limit = conf["message.max.bytes"]
        self.queue: list[tuple[Delivered, Any]] = []
        self.delivered: list[Delivered] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        on_delivery: Any = None,
    ) -> None:
        size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in headers or [])
        if size > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.queue.append((Delivered(topic, value, headers or []), on_delivery))

    def flush(self, timeout: float = 0) -> int:
        queue, self.queue = self.queue, []
        for rec, cb in queue:
            size = len(rec.value or b"") + sum(len(k) + len(v or b"") for k, v in rec.headers.items())
            if size > self.topic_limits.get(rec.topic(), 1 << 40):
                cb(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), rec)
            else:
                self.delivered.append(rec)
                cb(None, rec)
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0
