"""``alertfilter lean``: the lean producer of a pool (:mod:`alertfilter.leanstream`).

Its options are described once (:data:`LEAN_OPTIONS`), as ``run``'s are: each is also an
``ALERTFILTER_<OPTION>`` variable (``ALERTFILTER_LEAN_TOPIC``), and ``ALERTFILTER_KAFKA_<KEY>``
variables and ``-X`` are librdkafka settings; the operator's lean Deployment sets the variables.

Exit codes: 0 stopped cleanly; 2 a usage or configuration error; 3 the brokers cannot be reached, a
topic does not exist, or the lean topic has fewer partitions than the full stream; 1 anything else
(a record not acknowledged: nothing past it was committed, the next start copies it again).
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any, cast

from alertfilter.cli.args import add_options, fail, kafka_env, key_values, resolve_env
from alertfilter.lean import DEFAULT_LEAN_MAX_MESSAGE_BYTES
from alertfilter.logs import setup_logging
from alertfilter.settings import BY_NAME, Option, RunnerSettings

log = logging.getLogger("alertfilter.lean")

#: Every option of ``alertfilter lean`` but ``-X``.
LEAN_OPTIONS: tuple[Option, ...] = (
    BY_NAME["bootstrap-servers"],
    Option("input", "the full alert stream (the pool's mirrored topic); required (or via the environment)"),
    Option("lean-topic", "the lean topic written (default: <input>.lean); it needs as many partitions as the input"),
    Option("group", "consumer group on the input (default: alertfilter-lean-<input>)"),
    BY_NAME["batch-size"],
    Option(
        "max-message-bytes",
        "largest record produced, bytes (a message that cannot be spliced is forwarded whole)",
        DEFAULT_LEAN_MAX_MESSAGE_BYTES,
        BY_NAME["max-message-bytes"].convert,
    ),
    BY_NAME["metrics-port"],
    BY_NAME["schema-dir"],
    BY_NAME["schema-registry"],
    BY_NAME["exit-when-idle"],
    BY_NAME["topic-wait"],
    Option(
        "create-topics", "create a missing lean topic, as many partitions as the input (local runs)", False, flag=True
    ),
    BY_NAME["log-format"],
    BY_NAME["log-level"],
)

LEAN_DESCRIPTION = (
    "Copy a pool's full alert stream to its lean topic: the same alerts, the same writer schema and schema id, "
    "with the cutout fields (cutoutDifference, cutoutScience, cutoutTemplate) set to null by splicing the Avro "
    "body (nothing is decoded), each to the same partition as its input partition, with the same key and "
    "headers plus alertfilter.lean.source-topic/-partition/-offset naming the original. At-least-once: offsets "
    "are committed once the lean records are acknowledged. A message that cannot be spliced is forwarded "
    "whole with alertfilter.lean.unspliced: <reason>. Every option can also be set as an environment variable "
    "ALERTFILTER_<OPTION>, as for run. Metrics on /metrics: alertfilter_lean_alerts_in/out_total, "
    "alertfilter_lean_bytes_in/out_total, alertfilter_lean_unspliced_total{reason}, alertfilter_lean_consumer_lag."
)


def add_lean_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``alertfilter lean`` (environment defaults, as ``run``'s)."""
    add_options(p, LEAN_OPTIONS, env=True)
    p.add_argument(
        "-X", action="append", metavar="KEY=VALUE", help="extra librdkafka setting (repeatable; wins over variables)"
    )


def lean_settings(args: argparse.Namespace, kafka_config: dict[str, str]) -> RunnerSettings:
    """The Kafka side of the lean producer from resolved arguments (``output_topic`` is the lean topic)."""
    lean = args.lean_topic or f"{args.input}.lean"
    return RunnerSettings(
        bootstrap_servers=args.bootstrap_servers,
        input_topic=args.input,
        output_topic=lean,
        dead_letter_topic=lean,
        group_id=args.group or f"alertfilter-lean-{args.input}",
        batch_size=args.batch_size,
        max_message_bytes=args.max_message_bytes,
        metrics_port=args.metrics_port if args.metrics_port >= 0 else None,
        exit_when_idle_s=args.exit_when_idle,
        topic_wait_s=args.topic_wait,
        kafka_config=kafka_config,
    )


def cmd_lean(args: argparse.Namespace) -> int:
    """``alertfilter lean``; returns the exit code (see the module's docstring)."""
    from confluent_kafka import KafkaException

    from alertfilter.clients import BrokersUnreachable, ClientEvents, StartupError, TopicsMissing, make_clients
    from alertfilter.leanstream import DeliveryFailed, LeanMetrics, LeanProducer, PartitionsMismatch, Splicers
    from alertfilter.projection import available
    from alertfilter.schemas import DirectorySchemaSource, RegistrySchemaSource, SchemaSource

    prog = "alertfilter lean"
    resolve_env(args, prog, options=LEAN_OPTIONS)
    setup_logging(args.log_format, args.log_level)
    for name in ("bootstrap_servers", "input"):
        if not getattr(args, name):
            fail(f"{prog}: --{name.replace('_', '-')} (or ALERTFILTER_{name.upper()}) is required")
    if not available():
        fail(f"{prog}: the compiled skipper (alertfilter._avroskip) is not installed: nothing can be spliced")
    schemas: SchemaSource
    try:
        if args.schema_registry:
            schemas = RegistrySchemaSource(args.schema_registry)
        elif args.schema_dir:
            schemas = DirectorySchemaSource(args.schema_dir)
        else:
            fail(
                f"{prog}: --schema-dir or --schema-registry is required (the writer schemas tell where the cutouts are)"
            )
    except (ValueError, OSError, ImportError) as exc:
        fail(f"{prog}: {exc}")
    settings = lean_settings(args, {**kafka_env(), **key_values(args.X)})
    if settings.input_topic == settings.output_topic:
        fail(f"{prog}: the lean topic cannot be the input topic")
    metrics, stop = LeanMetrics(), threading.Event()
    try:
        # the events only set ``lag``, which LeanMetrics has as RunnerMetrics does
        clients = make_clients(settings, ClientEvents(cast(Any, metrics), stop))
    except StartupError as exc:
        fail(f"{prog}: {exc}")
    if args.create_topics:
        from alertfilter.kafkautil import ensure_topics

        try:
            md = clients.consumer.list_topics(settings.input_topic, timeout=10).topics.get(settings.input_topic)
            parts = len(md.partitions) if md is not None and md.error is None else 1
            ensure_topics(settings.bootstrap_servers, {settings.output_topic: parts}, settings.kafka_config)
        except KafkaException as exc:
            log.error("cannot create the lean topic on %s: %s", settings.bootstrap_servers, exc)
            return 3
    producer = LeanProducer(settings, clients.consumer, clients.producer, Splicers(schemas), metrics, stop)
    log.info(
        "lean stream %s -> %s (cutouts null), group %s, at-least-once",
        *(settings.input_topic, settings.output_topic, settings.group_id),
    )
    try:
        return producer.run()
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    except (TopicsMissing, BrokersUnreachable, PartitionsMismatch) as exc:
        log.error("%s", exc)
        return 3
    except (DeliveryFailed, KafkaException) as exc:
        log.error("%s; nothing past it was committed", exc)
        return 1
