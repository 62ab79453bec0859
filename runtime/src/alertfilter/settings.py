"""The runner's settings, described once: :data:`OPTIONS` for the command line, the environment and
the operator; :class:`RunnerSettings` for the runner's Kafka side.

Each :class:`Option` is an option of ``alertfilter run`` (``--batch-size``) and an environment
variable (``ALERTFILTER_BATCH_SIZE``), with its type, default and help: :mod:`alertfilter.cli.args`
builds the parser from the table, :func:`from_env` reads a pod's variables with the same checks,
and :func:`runner_env` is how the operator renders them (refusing a value the runner would refuse).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .candidates import CAP_STAGE_OPTIONS, candidates_problem
from .cap import DEFAULT_MAX_ALERTS_PER_VISIT
from .codecs import BACKENDS, FORMATS
from .convert import SettingError, field_path, int_in, lower, parse_bool, seconds
from .fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD
from .limitspec import LIMIT_OPTIONS
from .positions import EARLIEST, POSITION_OPTIONS, Positions
from .runstatus import RunnerStatus

#: The default largest record the runner produces, bytes. Rubin alerts are 50-250 KB (DMTN-102);
#: the operator sets the output topic's ``max.message.bytes`` to the same figure.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Attempts, after the first, to decode a batch while the schema source is unusable.
DEFAULT_SCHEMA_RETRIES = 5
#: The longest wait between those attempts, s (1, 2, 4, ... up to this).
SCHEMA_BACKOFF_MAX_S = 30.0
#: Room kept in ``max.poll.interval.ms`` beyond a batch of filter calls at their budget, ms.
POLL_INTERVAL_MARGIN_MS = 30_000
#: Messages per consume call and per commit.
DEFAULT_BATCH_SIZE = 200
#: The per-alert time budget of a filter call, s.
DEFAULT_FILTER_TIMEOUT_S = 1.0
#: Prefix of every runner variable; ``ALERTFILTER_KAFKA_<KEY>`` ones are librdkafka settings.
ENV_PREFIX = "ALERTFILTER_"
#: The port of /metrics, /healthz and /readyz.
DEFAULT_METRICS_PORT = 8080


@dataclass(frozen=True)
class Option:
    """One setting of ``alertfilter run``.

    Attributes:
        name: the long option without dashes (``batch-size``).
        help: its help text. default: its built-in default (None: unset).
        convert: text → value, raising :class:`SettingError`; None for text as it is.
        choices: the values allowed, or None. flag: an on/off option (``--exactly-once``).
        group: options of one group exclude each other on the command line (``cap``).
        commands: the commands that have it besides ``run`` (``check``, ``consume``).
    """

    name: str
    help: str
    default: Any = None
    convert: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False
    group: str = ""
    commands: tuple[str, ...] = ()

    @property
    def var(self) -> str:
        """Its environment variable: ``ALERTFILTER_BATCH_SIZE``."""
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        """Its attribute name: ``batch_size``."""
        return self.name.replace("-", "_")

    def parse(self, text: str) -> Any:
        """The value ``text`` gives this option.

        Raises:
            SettingError: a value the option refuses.
        """
        value = parse_bool(text) if self.flag else self.convert(text) if self.convert else text
        if self.choices is not None and value not in self.choices:
            raise SettingError(f"expected one of {', '.join(self.choices)}")
        return value

    def render(self, value: Any) -> str:
        """``value`` as this option's variable holds it (``true``, ``0.5``, ``diaSource.visit``)."""
        if self.flag:
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def hard_timeout(filter_timeout_s: float, hard: float | None) -> float:
    """The hard limit of one message, s: ``hard`` when given (0: none), else ``max(10 x filter timeout, 10)``."""
    if hard is not None:
        return hard
    return max(10 * filter_timeout_s, 10.0)


def largest_batch(filter_timeout_s: float, max_poll_interval_ms: int = 300_000) -> int:
    """The largest batch size, at most the default, that :meth:`RunnerSettings.validate` accepts
    with this filter timeout (s): one batch of calls at the budget must fit ``max.poll.interval.ms``
    less 30 s. The operator renders it for slow budgets."""
    if not filter_timeout_s:
        return DEFAULT_BATCH_SIZE
    room_ms = max_poll_interval_ms - POLL_INTERVAL_MARGIN_MS
    fits = math.ceil(room_ms / (filter_timeout_s * 1000)) - 1  # strictly below the interval
    return max(1, min(DEFAULT_BATCH_SIZE, fits))


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
        start_from: where the group starts a partition it has no committed offset for: ``latest``,
            ``earliest`` or an RFC 3339 time (:mod:`alertfilter.positions`).
        replay_from, replay_id: a replay request (an RFC 3339 time, its number), or None.
        full_topic: the full stream when ``input_topic`` is its lean stream (cutouts null): an
            accepted alert is forwarded as its original, read from here (:mod:`alertfilter.originals`).
        candidates_topic, cap_stage: the filter's candidates topic (or None), and whether accepted
            alerts go there, for a cap stage (:mod:`alertfilter.capstage`).
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
    start_from: str = EARLIEST
    replay_from: str | None = None
    replay_id: int | None = None
    full_topic: str | None = None
    candidates_topic: str | None = None
    cap_stage: bool = False

    def liveness_window(self) -> float:
        """``liveness_window_s``, or its default ``max(60, 3 x hard_timeout_s)``, s."""
        if self.liveness_window_s is not None:
            return self.liveness_window_s
        return max(60.0, 3 * self.hard_timeout_s)

    def transactional(self) -> str:
        """The producer's transactional id (``--transactional-id``, default ``alertfilter-<group>-<hostname>``)."""
        return self.transactional_id or f"alertfilter-{self.group_id}-{socket.gethostname()}"

    def positions(self, consumer: Any, status: RunnerStatus) -> Positions:
        """The start positions and replays these settings ask for, on ``consumer`` (:mod:`alertfilter.positions`)."""
        return Positions(consumer, self.start_from, self.replay_from, self.replay_id, status)

    def validate(self, filter_timeout_s: float) -> None:
        """Raises ValueError when the settings cannot work together."""
        if not 1 <= self.batch_size <= 100_000:
            raise ValueError(f"batch size must be between 1 and 100000, got {self.batch_size}")
        if self.input_topic in (self.output_topic, self.dead_letter_topic):
            raise ValueError(f"the input topic {self.input_topic!r} cannot also be the output or dead-letter topic")
        if (self.replay_from is None) != (self.replay_id is None):
            raise ValueError("--replay-from and --replay-id go together: a replay is a time and its request number")
        if problem := candidates_problem(self):
            raise ValueError(problem)
        if self.hard_timeout_s and filter_timeout_s and self.hard_timeout_s <= filter_timeout_s:
            raise ValueError(
                f"the filter hard timeout ({self.hard_timeout_s:g} s) must be longer than the filter "
                f"timeout ({filter_timeout_s:g} s)"
            )
        worst_ms = self.batch_size * filter_timeout_s * 1000 + POLL_INTERVAL_MARGIN_MS
        if filter_timeout_s and worst_ms >= self.max_poll_interval_ms:
            raise ValueError(
                f"batch size {self.batch_size} x filter timeout {filter_timeout_s:g} s (+30 s) = {worst_ms / 1000:.0f} s "
                f"reaches max.poll.interval.ms ({self.max_poll_interval_ms / 1000:.0f} s): a slow filter would get "
                "the consumer evicted from its group; lower --batch-size or --filter-timeout"
            )


_CHECK = ("check",)
_DECODE = ("consume",)
#: Every option of ``alertfilter run`` but ``-X``, in the order ``--help`` shows them.
OPTIONS: tuple[Option, ...] = (
    Option("filter", "the filter's Python source file; required (or via the environment)"),
    Option("name", "filter name for headers, logs and the default group (default: the class or function name)"),
    Option("bootstrap-servers", "Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]; required (or via the environment)"),
    Option("input", "input topic (the full alert stream); required (or via the environment)"),
    Option("output", "output topic for accepted alerts; required (or via the environment)"),
    Option("dead-letter-topic", "topic for alerts that could not be filtered (default: <output>.deadletter)"),
    Option("group", "consumer group (default: alertfilter-<name>)"),
    Option(
        "batch-size",
        "messages per consume call and per commit (or transaction), 1 to 100000",
        DEFAULT_BATCH_SIZE,
        int_in(1, 100_000),
    ),
    Option(
        "exactly-once",
        "use Kafka transactions (read the output with isolation.level=read_committed); default: at-least-once",
        False,
        flag=True,
    ),
    Option("transactional-id", "transactional.id for --exactly-once (default: alertfilter-<group>-<hostname>)"),
    Option(
        "max-message-bytes",
        "largest record produced, bytes (>= 1024); a larger accepted alert goes to the "
        "dead-letter topic, without its value",
        DEFAULT_MAX_MESSAGE_BYTES,
        int_in(1024, 1_000_000_000),
    ),
    Option("metrics-port", "port of /metrics, /healthz, /readyz (-1: none)", DEFAULT_METRICS_PORT, int_in(-1, 65535)),
    Option(
        "filter-hard-timeout",
        "hard limit of one alert's processing, s (default: max(10 x --filter-timeout, "
        "10); 0: none): past it, even when the filter defeats --filter-timeout, the filter process is ended, the "
        "alert dead-lettered (filter-timeout) and a new filter process started",
        None,
        seconds(),
    ),
    Option(
        "filter-memory-limit",
        "address space the filter process may map, bytes (0: no limit); an allocation past it fails with MemoryError",
        0,
        int_in(0),
    ),
    Option(
        "liveness-window",
        "/healthz fails after this long without progress, s (default: max(60, 3 x the hard limit))",
        None,
        seconds(allow_zero=False),
    ),
    Option(
        "schema-retries",
        "while a schema cannot be had (a malformed schema file, an unreachable registry), "
        "retry the batch this many times, waiting 1, 2, 4... up to 30 s, then exit with code 4; its messages are "
        "neither dead-lettered nor committed meanwhile",
        DEFAULT_SCHEMA_RETRIES,
        int_in(0, 100),
    ),
    Option(
        "exit-when-idle",
        "exit 0 once all partitions are at their end for this many seconds (default: never)",
        None,
        seconds(),
    ),
    Option(
        "topic-wait", "wait this long at start for the brokers to answer and the topics to exist, s", 120.0, seconds()
    ),
    Option(
        "create-topics",
        "create missing output and dead-letter topics (local runs; in a cluster the operator does)",
        False,
        flag=True,
    ),
    Option(
        "full-topic",
        "the full stream, when --input is its lean stream (alertfilter lean): each accepted alert is forwarded "
        "as its original full message, read from here at the partition and offset the lean message names",
    ),
    Option("log-format", "log lines as text or as one JSON object each", "text", choices=("text", "json")),
    Option("log-level", "debug, info, warning or error", "info", lower, ("debug", "info", "warning", "error")),
    *(Option(name, text, False if flag else None, flag=flag) for name, text, flag in CAP_STAGE_OPTIONS),
    *(Option(name, text, default, convert) for name, text, default, convert in LIMIT_OPTIONS),  # spec.limits
    *(Option(name, text, default, convert) for name, text, default, convert in POSITION_OPTIONS),  # startFrom, replay
    # the filter's rules, also options of check
    Option(
        "entrypoint",
        "the class or function to use: needed when the source defines several classes deriving "
        "from AlertFilter or, with no such class, several public functions",
        commands=_CHECK,
    ),
    Option(
        "max-alerts-per-visit",
        "accept at most N alerts per visit (20 is the original design's figure; 0: no cap)",
        DEFAULT_MAX_ALERTS_PER_VISIT,
        int_in(0),
        group="cap",
        commands=_CHECK,
    ),
    Option("no-visit-cap", "no per-visit cap", False, flag=True, group="cap", commands=_CHECK),
    Option(
        "visit-field",
        "dotted path of the visit id the cap counts by (its value must be an integer or a string)",
        DEFAULT_VISIT_FIELD,
        field_path,
        commands=_CHECK,
    ),
    Option(
        "id-field",
        "dotted path of the alert id shown in outputs and logs",
        DEFAULT_ID_FIELD,
        field_path,
        commands=_CHECK,
    ),
    Option(
        "filter-timeout",
        "per-alert time budget of the filter call, s; over it the alert is an error (0: none)",
        DEFAULT_FILTER_TIMEOUT_S,
        seconds(),
        commands=_CHECK,
    ),
    # decoding, also options of consume
    Option(
        "format",
        "message format: confluent (Confluent wire format, how Rubin publishes), schemaless (--schema) "
        "or container (an Avro container file per message)",
        "confluent",
        choices=FORMATS,
        commands=_DECODE,
    ),
    Option(
        "schema-dir", "directory of .avsc files: <id>.avsc, or Rubin's lsst.vX_Y.alert.avsc layout", commands=_DECODE
    ),
    Option("schema-registry", "URL of a Confluent-compatible schema registry", commands=_DECODE),
    Option("schema", "writer schema file, for --format schemaless", commands=_DECODE),
    Option("reader-schema", "optional reader schema file", commands=_DECODE),
    Option("decoder", "Avro decoder", "cavro", choices=BACKENDS, commands=_DECODE),
    Option(
        "fields",
        "alert fields to decode: auto (the filter's `fields` declaration, else those its source reads; else all), "
        "all, or a comma-separated list of top-level and history fields (diaSource,prvDiaSources.psfFlux,"
        "prvDiaSources[band]); decoding only what a filter reads is ~20x faster on long-history alerts",
        "auto",
    ),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The values the ``ALERTFILTER_<OPTION>`` variables of ``environ`` give, by attribute name
    (``batch_size``); an empty variable counts as unset.

    Raises:
        SettingError: a variable with a value its option refuses; ``str()`` names the variable.
    """
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = environ.get(opt.var)
        if raw is None or raw == "":
            continue
        try:
            out[opt.dest] = opt.parse(raw)
        except SettingError as exc:
            raise SettingError(f"{opt.var}={raw!r}: {exc}") from None
    return out


def runner_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The environment of a runner pod with these settings (by option name: ``batch-size``).

    Raises:
        KeyError: an option ``alertfilter run`` does not have.
        SettingError: a value the runner would refuse.
    """
    out: dict[str, str] = {}
    for name, value in values.items():
        opt = BY_NAME[name]
        text = opt.render(value)
        opt.parse(text)
        out[opt.var] = text
    return out
