"""Where the runner's records go: accepted alerts to the output topic (original bytes, key and
headers, plus provenance headers), alerts that could not be filtered to the dead-letter topic (the
reason in headers), and the fallbacks when a record is too large for the producer or the broker.

:meth:`Sink.serve` takes the delivery reports that have come without waiting, :meth:`Sink.settle`
waits for every one. Each record counts against the batch it was produced for (``Sink.batch``, an
:class:`~alertfilter.ledger.InFlight`) until it is acknowledged; only then may that batch's offsets
be committed. A record the broker refuses as too large is sent again, smaller, for the same batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from .candidates import candidate_headers, visit_key
from .clients import kafka_error
from .ledger import InFlight
from .metrics import Heartbeat, RunnerMetrics
from .outcome import Outcome, Reason
from .settings import RunnerSettings

log = logging.getLogger("alertfilter.runner")

#: Room kept for headers when a dead letter carries the original value, bytes.
DEAD_LETTER_HEADER_MARGIN = 64 * 1024

H_FILTER = "alertfilter.filter"
H_SHA = "alertfilter.source-sha256"
H_VISIT = "alertfilter.visit"
H_REASON = "alertfilter.error.reason"
H_MESSAGE = "alertfilter.error.message"
H_VALUE_OMITTED = "alertfilter.error.value-omitted"
H_HEADERS_OMITTED = "alertfilter.error.headers-omitted"
H_SRC_TOPIC = "alertfilter.source.topic"
H_SRC_PARTITION = "alertfilter.source.partition"
H_SRC_OFFSET = "alertfilter.source.offset"
H_ALERT_ID = "alertfilter.alert-id"
#: Every header the runner writes starts with this; incoming ones that do are dropped, never forwarded.
OWN_PREFIX = "alertfilter."

Headers = list[tuple[str, bytes | None]]


class DeliveryFailed(RuntimeError):
    """A produced record was not acknowledged; the batch's offsets were not committed."""


def dead_letter_value_limit(max_message_bytes: int) -> int:
    """Largest original value (plus key and headers) a dead letter keeps, bytes: the producer's limit
    less :data:`DEAD_LETTER_HEADER_MARGIN` (at least half the limit)."""
    return max(max_message_bytes - DEAD_LETTER_HEADER_MARGIN, max_message_bytes // 2)


def headers_size(headers: Iterable[tuple[str, bytes | None]]) -> int:
    """Bytes of ``headers`` (names and values)."""
    return sum(len(k) + len(v or b"") for k, v in headers)


def foreign_headers(headers: Iterable[tuple[str | bytes, bytes | None]] | None) -> Headers:
    """The source record's headers without any whose name starts with ``alertfilter.`` (in any
    case): only the runner writes those, so a forged copy upstream cannot pass for its provenance."""
    out: Headers = []
    for key, value in headers or []:
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if not name.lower().startswith(OWN_PREFIX):
            out.append((name, value))
    return out


def dead_letter_headers(
    source_headers: Headers | None,
    base: Headers,
    reason: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    alert_id: Any,
    value_omitted: bool = False,
) -> Headers:
    """The headers of a dead letter: the source record's own (None to leave them out; ``alertfilter.*``
    ones are always dropped), then the filter's
    name and hash, the reason, message, source topic/partition/offset, the alert id when known, and
    ``alertfilter.error.value-omitted: true`` (``headers-omitted`` too when the source headers were
    left out)."""
    out: Headers = (
        foreign_headers(source_headers)
        + list(base)
        + [
            (H_REASON, str(reason).encode()),
            (H_MESSAGE, message.encode("utf-8", "replace")[:2000]),
            (H_SRC_TOPIC, topic.encode()),
            (H_SRC_PARTITION, str(partition).encode()),
            (H_SRC_OFFSET, str(offset).encode()),
        ]
    )
    if alert_id is not None and alert_id != "":
        out.append((H_ALERT_ID, str(alert_id).encode("utf-8", "replace")[:1000]))
    if value_omitted:
        out.append((H_VALUE_OMITTED, b"true"))
    if source_headers is None:
        out.append((H_HEADERS_OMITTED, b"true"))
    return out


def too_large_message(value_bytes: int, key_bytes: int, headers: Headers, limit: int) -> str:
    """The ``output-too-large`` message of an accepted record: its size, part by part (the alert,
    its key, its headers), against the producer's ``limit`` (bytes), ending with the largest part."""
    head = headers_size(headers)
    total = value_bytes + key_bytes + head
    parts = {"the alert": value_bytes, "the key": key_bytes, "the headers": head}
    largest = max(parts, key=lambda k: parts[k])
    return (
        f"the accepted record is {total:,} bytes: the alert {value_bytes:,}, its key {key_bytes:,}, "
        f"{len(headers)} headers {head:,}; over the producer's maximum message size ({limit:,} bytes) "
        f"or the output topic's max.message.bytes; most of it is {largest}"
    )


class Sink:
    """Produces the runner's records and tracks their delivery.

    Args:
        producer: a confluent-kafka ``Producer`` (or a fake with ``produce``, ``poll``, ``flush``).
        settings: the topics and the producer's size limit.
        base_headers: the provenance headers (filter name, source hash) of every record.
        metrics, totals: counted when a record is acknowledged (``accepted``, ``dead_letters``) or
            turned into an ``output-too-large`` error (``errors``).
        heartbeat: beaten while waiting on the producer; stopping: True once SIGTERM came.
    """

    def __init__(
        self,
        producer: Any,
        settings: RunnerSettings,
        base_headers: Headers,
        metrics: RunnerMetrics,
        totals: dict[str, int],
        heartbeat: Heartbeat,
        stopping: Callable[[], bool],
    ) -> None:
        self.producer = producer
        self.settings = settings
        self.base_headers = base_headers
        self.metrics = metrics
        self.totals = totals
        self.heartbeat = heartbeat
        self.stopping = stopping
        self.dead_letter_limit = dead_letter_value_limit(settings.max_message_bytes)
        #: The batch whose records are being produced (their acknowledgements count against it).
        self.batch: InFlight | None = None
        self._failed: list[tuple[KafkaError, Any, Callable[[], None] | None, InFlight | None]] = []
        #: The replay request the input is read under, which candidates carry (``--cap-stage``).
        self.generation: Callable[[], int] = int

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Headers,
        origin: Any,
        retry: Callable[[], None] | None,
    ) -> None:
        """Produce one record; ``retry`` is called instead of failing the batch when the broker
        rejects it as too large (None: that fails the batch).

        Raises:
            KafkaException: the producer refused the record at once (MSG_SIZE_TOO_LARGE...).
        """
        s = self.settings
        batch = self.batch

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is not None:  # still outstanding: settled by _resolve_failed
                self._failed.append((err, origin, retry, batch))
                return
            if batch is not None:
                batch.outstanding -= 1
            if msg.topic() == s.output_topic:
                self.metrics.accepted_now()  # counted once acknowledged
                self.totals["accepted"] += 1
            elif msg.topic() == s.dead_letter_topic:
                self.metrics.dead_letters.inc()
                self.totals["dead_letters"] += 1

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
                if batch is not None:
                    batch.outstanding += 1
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.heartbeat.beat()
                self.producer.poll(0.5)

    def forward(self, m: Any, oc: Outcome) -> None:
        """Send the accepted message ``m`` to the output topic as it is, plus provenance headers; a
        record too large for the producer or the topic becomes an ``output-too-large`` dead letter.
        With a cap stage (``--cap-stage``), send it to the candidates topic instead, keyed by its
        visit (:mod:`alertfilter.candidates`): the stage forwards it, or caps it."""
        if self.settings.cap_stage:
            topic, key = self.settings.candidates_topic, visit_key(oc.visit)
            headers = candidate_headers(m, oc.alert_id, self.generation())
        else:
            topic, key = self.settings.output_topic, m.key()
            headers = (
                foreign_headers(m.headers()) + self.base_headers + [(H_VISIT, str(oc.visit).encode("utf-8", "replace"))]
            )
        try:
            self.produce(str(topic), m.value(), key, headers, m, lambda: self._too_large(m, oc.alert_id, headers))
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            self._too_large(m, oc.alert_id, headers)

    def _too_large(self, m: Any, alert_id: Any, headers: Headers) -> None:
        self.metrics.errors.labels(Reason.TOO_LARGE.value).inc()
        self.totals["errors"] += 1
        self.dead_letter(
            m,
            Reason.TOO_LARGE,
            too_large_message(len(m.value() or b""), len(m.key() or b""), headers, self.settings.max_message_bytes),
            alert_id,
            keep_value=False,
        )

    def dead_letter(
        self,
        m: Any,
        reason: str,
        message: str,
        alert_id: Any,
        keep_value: bool = True,
        keep_headers: bool = True,
        attempt: int = 0,
    ) -> None:
        """Send ``m`` to the dead-letter topic with the reason in its headers.

        The original value is left out (header ``alertfilter.error.value-omitted: true``) when it
        would not fit the producer's limit less 64 KiB, or when the producer or the broker refuses
        the record as too large; the original headers and key too (``headers-omitted``) when they
        alone are that large.

        Raises:
            KafkaException: the producer refused the record for another reason.
            DeliveryFailed: the record was refused as too large even without its value and headers.
        """
        if attempt > 3:
            raise DeliveryFailed(
                f"the dead letter of {m.topic()}[{m.partition()}]@{m.offset()} is refused as too "
                "large even without its value and headers"
            )
        value = m.value() if keep_value else None
        source_headers = list(m.headers() or []) if keep_headers else None
        key = m.key() if keep_headers else None
        own = len(key or b"") + headers_size(source_headers or [])
        if value is not None and len(value) + own > self.dead_letter_limit:
            value = None
        omitted = value is None and bool(m.value())
        headers = dead_letter_headers(
            source_headers, self.base_headers, reason, message, m.topic(), m.partition(), m.offset(), alert_id, omitted
        )
        if attempt == 0:
            log.warning(
                "dead letter: reason=%s topic=%s partition=%d offset=%d alert_id=%s: %s%s",
                reason,
                m.topic(),
                m.partition(),
                m.offset(),
                alert_id,
                message,
                " (value left out: too large)" if omitted else "",
            )

        def again() -> None:  # refused as too large: leave out the value, then big headers; else try once more
            if value is not None:
                self.dead_letter(m, reason, message, alert_id, False, keep_headers, attempt + 1)
            elif keep_headers and own > DEAD_LETTER_HEADER_MARGIN:
                self.dead_letter(m, reason, message, alert_id, False, False, attempt + 1)
            else:  # the broker refuses whole batches: a small record may have shared one with a large record
                self.dead_letter(
                    m, reason, message, alert_id, keep_value and value is not None, keep_headers, attempt + 1
                )

        try:
            self.produce(self.settings.dead_letter_topic, value, key, headers, m, again)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            log.warning(
                "the dead letter of %s[%d]@%d is too large for the producer; sending it without its %s",
                m.topic(),
                m.partition(),
                m.offset(),
                "value" if value is not None else "headers",
            )
            if value is None and keep_headers:
                self.dead_letter(m, reason, message, alert_id, False, False, attempt + 1)
            else:
                again()

    def serve(self) -> None:
        """Take the delivery reports that have arrived, without waiting (``flush(0)`` serves them
        and sends lingering records now); re-send records refused as too large.

        Raises:
            DeliveryFailed: any other delivery error.
        """
        self.producer.flush(0)
        self._resolve_failed()

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for delivery reports, then act on them as :meth:`serve`."""
        self.heartbeat.beat()
        self.producer.flush(timeout)
        self._resolve_failed()

    def settle(self) -> None:
        """Wait for every delivery report; re-send records the broker refused as too large without
        their value (accepted alerts go to the dead-letter topic instead).

        Raises:
            DeliveryFailed: any other delivery error.
        """
        for _ in range(4):
            while self.producer.flush(10) > 0:
                self.heartbeat.beat()
                log.warning("waiting for the broker to acknowledge produced records")
                if self.stopping() and self.producer.flush(30) > 0:
                    raise DeliveryFailed("records still unacknowledged after SIGTERM; not committing")
            if not self._resolve_failed():
                return
        raise DeliveryFailed("dead-letter records could not be delivered")

    def _resolve_failed(self) -> bool:
        """Re-send the records refused as too large, smaller, for the batch they were produced for;
        True when there were failed records.

        Raises:
            DeliveryFailed: a record failed for another reason.
        """
        failed, self._failed = self._failed, []
        for err, origin, retry, batch in failed:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and retry is not None:
                log.warning(
                    "the broker refused a record from %s[%d]@%d as too large (the topic's "
                    "max.message.bytes); sending it again, smaller",
                    origin.topic(),
                    origin.partition(),
                    origin.offset(),
                )
                current, self.batch = self.batch, batch
                try:
                    retry()
                finally:
                    self.batch = current
                if batch is not None:
                    batch.outstanding -= 1  # replaced by the record just sent
            else:
                raise DeliveryFailed(
                    f"record from {origin.topic()}[{origin.partition()}]@{origin.offset()} not delivered: {err}"
                )
        return bool(failed)
