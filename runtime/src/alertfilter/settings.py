"""The runner's settings: one typed model, :class:`RunnerSettings`, for the command line, the runner
and the operator's rendering of a runner pod's environment.

Each setting is an option of ``alertfilter run`` (``--batch-size``) and an environment variable
(``ALERTFILTER_BATCH_SIZE``); :data:`OPTIONS` lists them with their types, defaults and help, and
:mod:`alertfilter.cli.args` builds the parser from it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

#: The default largest record the runner produces, bytes. Rubin alerts are 50-250 KB (DMTN-102);
#: the operator sets the output topic's ``max.message.bytes`` to the same figure.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: The visit id Rubin alerts carry (the per-visit cap's key; DMTN-102's alert schema).
DEFAULT_VISIT_FIELD = "diaSource.visit"
#: The alert id of Rubin alerts (the top-level ``diaSourceId``).
DEFAULT_ID_FIELD = "diaSourceId"
#: Attempts, after the first, to decode a batch while the schema source is unusable.
DEFAULT_SCHEMA_RETRIES = 5
#: The longest wait between those attempts, s (1, 2, 4, ... up to this).
SCHEMA_BACKOFF_MAX_S = 30.0
#: Messages per consume call and per commit.
DEFAULT_BATCH_SIZE = 200
#: The per-alert time budget of a filter call, s.
DEFAULT_FILTER_TIMEOUT_S = 1.0
#: Prefix of every runner variable; ``ALERTFILTER_KAFKA_<KEY>`` ones are librdkafka settings.
ENV_PREFIX = "ALERTFILTER_"


def hard_timeout(filter_timeout_s: float, hard: float | None) -> float:
    """The hard limit of one message, s: ``hard`` when given (0: none), else ``max(10 x filter timeout, 10)``."""
    if hard is not None:
        return hard
    return max(10 * filter_timeout_s, 10.0)


@dataclass
class RunnerSettings:
    """Settings of one runner's Kafka side.

    Attributes:
        bootstrap_servers: Kafka bootstrap list, ``host:port[,...]``.
        input_topic: the full alert stream (mirrored) topic.
        output_topic: where accepted alerts go.
        dead_letter_topic: where alerts that could not be filtered go, with the reason in headers.
        group_id: consumer group of this filter.
        batch_size: messages per consume call and per commit/transaction (1 to 100,000).
        poll_timeout_s: the longest one consume call waits, s.
        exactly_once: use Kafka transactions.
        transactional_id: transactional id (exactly-once); default ``alertfilter-<group>-<hostname>``.
        max_message_bytes: largest record produced, bytes; larger outputs go to the dead-letter
            topic without their value, and so do dead letters larger than it less 64 KiB.
        max_poll_interval_ms: the consumer's ``max.poll.interval.ms``; must exceed
            ``batch_size * filter_timeout_s`` plus a 30 s margin so one slow filter never breaks it.
        metrics_port: HTTP port of /metrics, /healthz, /readyz; None for no server.
        exit_when_idle_s: exit 0 after this long with every assigned partition at its end (tests,
            demos, backfills); None to run until SIGTERM.
        hard_timeout_s: the hard limit of one message's processing, s (0 for none): past it the
            filter process is ended, the alert dead-lettered and a new filter process started.
            The CLI's default is ``max(10 x filter timeout, 10)`` (:func:`hard_timeout`).
        liveness_window_s: /healthz fails when no message was processed and the poll loop did not
            turn for this long, s; None for ``max(60, 3 x hard_timeout_s)``.
        schema_retries: how many times to retry a batch, with back-off (1, 2, 4... up to 30 s), while
            the schema source is unusable before giving up with ``SchemaSourceError``.
        topic_wait_s: how long to wait at start for the input, output and dead-letter topics to
            exist (the operator creates them as Strimzi KafkaTopics), s.
        kafka_config: extra librdkafka settings for both clients (security, timeouts...).
    """

    bootstrap_servers: str
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    group_id: str
    batch_size: int = DEFAULT_BATCH_SIZE
    poll_timeout_s: float = 0.5
    exactly_once: bool = False
    transactional_id: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_poll_interval_ms: int = 300_000
    metrics_port: int | None = None
    exit_when_idle_s: float | None = None
    hard_timeout_s: float = 0.0
    liveness_window_s: float | None = None
    schema_retries: int = DEFAULT_SCHEMA_RETRIES
    topic_wait_s: float = 120.0
    kafka_config: dict[str, str] = field(default_factory=dict)

    def liveness_window(self) -> float:
        """``liveness_window_s``, or its default ``max(60, 3 x hard_timeout_s)``, s."""
        if self.liveness_window_s is not None:
            return self.liveness_window_s
        return max(60.0, 3 * self.hard_timeout_s)

    def transactional(self) -> str:
        """The producer's transactional id (``--transactional-id``, default ``alertfilter-<group>-<hostname>``)."""
        return self.transactional_id or f"alertfilter-{self.group_id}-{socket.gethostname()}"

    def validate(self, filter_timeout_s: float) -> None:
        """Raises ValueError when the settings cannot work together."""
        if not 1 <= self.batch_size <= 100_000:
            raise ValueError(f"batch size must be between 1 and 100000, got {self.batch_size}")
        if self.input_topic in (self.output_topic, self.dead_letter_topic):
            raise ValueError(f"the input topic {self.input_topic!r} cannot also be the output or dead-letter topic")
        if self.hard_timeout_s and filter_timeout_s and self.hard_timeout_s <= filter_timeout_s:
            raise ValueError(f"the filter hard timeout ({self.hard_timeout_s:g} s) must be longer than the filter "
                             f"timeout ({filter_timeout_s:g} s)")
        worst_ms = self.batch_size * filter_timeout_s * 1000 + 30_000
        if filter_timeout_s and worst_ms >= self.max_poll_interval_ms:
            raise ValueError(
                f"batch size {self.batch_size} x filter timeout {filter_timeout_s:g} s (+30 s) = {worst_ms / 1000:.0f} s "
                f"reaches max.poll.interval.ms ({self.max_poll_interval_ms / 1000:.0f} s): a slow filter would get "
                "the consumer evicted from its group; lower --batch-size or --filter-timeout")
