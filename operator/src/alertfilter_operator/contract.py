"""What an AlertFilter may claim on a shared cluster: its output topic and its pool (pure).

One set of rules for the admission webhook (``kubectl apply`` is refused with the reason) and the
reconciler (a filter admitted while the webhook was off, or in a race with another, is refused
again before anything is written):

- the output topic, and the dead-letter topic named after it, are Kafka-legal names;
- they are never a pool's input topic or lean topic (only the lean producer writes it), an internal
  topic of Kafka, MirrorMaker 2 or Strimzi, or a
  dead-letter name (``*.deadletter``) of their own, nor a filter's candidates topic
  (``af.<namespace>.<name>.candidates``, the cap stage's input: only its filter's runners use it);
- they are never another filter's output or dead-letter topic, compared as Kafka compares them
  (``.`` and ``_`` collide in its metric names, so it refuses the second of such a pair);
- ``<namespace>.<anything>`` belongs to that namespace (``<namespace>.<name>`` is every filter's
  default): a filter may not take a name under another existing namespace's prefix;
- ``spec.pool`` names where a filter runs; once it runs there, the pool cannot change (its topics
  live on that pool's Kafka), but a pool that never took the filter can be corrected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .naming import DEAD_LETTER_SUFFIX, dead_letter_topic, output_topic

#: Kafka's longest topic name, characters (``org.apache.kafka.common.internals.Topic``).
KAFKA_TOPIC_MAX = 249
#: Longest output topic: its dead-letter topic, ``<output>.deadletter``, must be legal too.
OUTPUT_TOPIC_MAX = KAFKA_TOPIC_MAX - len(DEAD_LETTER_SUFFIX)
_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")
#: Prefixes and names of topics that Kafka (``__consumer_offsets``, ``__transaction_state``),
#: MirrorMaker 2 (``mm2-offset-syncs.*``, ``heartbeats``, ``*.checkpoints.internal``), Kafka Connect
#: as Strimzi runs it (``mirrormaker2-cluster-*``, ``connect-*``) and Strimzi's own operators keep.
INTERNAL_PREFIXES = ("__", "mm2-", "mirrormaker2-", "connect-", "strimzi")
INTERNAL_SUFFIXES = (".internal",)
INTERNAL_NAMES = frozenset({"heartbeats"})
#: The collision key (:func:`collision_key`) of any filter's candidates topic,
#: ``af.<namespace>.<name>.candidates`` (``naming.candidates_topic``; DNS labels hold no ``.`` or ``_``).
CANDIDATES_KEY = re.compile(r"af_[a-z0-9-]+_[a-z0-9-]+_candidates")


def collision_key(topic: str) -> str:
    """``topic`` as these rules compare names: ``.`` and ``_`` alike (Kafka refuses the second of
    such a pair, their metric names collide) and case folded (``Science.x`` would pass for ``science.x``)."""
    return topic.replace(".", "_").lower()


def name_prefix(topic: str) -> str | None:
    """The part of ``topic`` before its first ``.`` or ``_``, lower case; None when it has neither."""
    parts = re.split(r"[._]", topic, maxsplit=1)
    return parts[0].lower() if len(parts) == 2 else None


@dataclass(frozen=True)
class Claims:
    """What the rest of the cluster holds, from the filter's point of view.

    Attributes:
        input_topics: every FilterPool's input (mirrored) topic and lean topic.
        taken: collision key (:func:`collision_key`) of every other filter's output and dead-letter topic.
        namespaces: names of the cluster's namespaces.
        mirror_prefixes: each pool's MirrorMaker 2 prefix, ``<pool kafka>-mirror``: its Connect storage
            topics (``-configs``, ``-offsets``, ``-status``) start with it, and its KafkaUser holds it.
    """

    input_topics: frozenset[str]
    taken: frozenset[str]
    namespaces: frozenset[str]
    mirror_prefixes: frozenset[str] = frozenset()


def filter_topics(namespace: str, name: str, spec: Mapping[str, Any]) -> tuple[str, str]:
    """A filter's (output, dead-letter) topic from its identity and (unparsed) spec."""
    out = output_topic(namespace, name, ((spec.get("output") or {}).get("topic")) or None)
    return out, dead_letter_topic(out)


def claims_of(
    filters: Iterable[Mapping[str, Any]],
    pools: Iterable[Mapping[str, Any]],
    namespaces: Iterable[str],
    exclude: tuple[str, str] | None,
) -> Claims:
    """The claims of every AlertFilter but ``exclude`` (the (namespace, name) being checked) and of every pool.

    Args:
        filters: AlertFilter bodies as the API returns them; those being deleted still hold their topics.
        pools: FilterPool bodies.
        namespaces: every namespace's name.
    """
    taken: set[str] = set()
    for body in filters:
        meta = body.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) == exclude:
            continue
        for topic in filter_topics(meta.get("namespace", ""), meta.get("name", ""), body.get("spec") or {}):
            taken.add(collision_key(topic))
    inputs: set[str] = set()
    mirrors: set[str] = set()
    for p in pools:
        spec = p.get("spec") or {}
        # pool_models.pool_kafka_name on the unparsed body: <clusterName or pool-kafka>-mirror
        cluster = (spec.get("kafka") or {}).get("clusterName") or f"{(p.get('metadata') or {}).get('name')}-kafka"
        mirrors.add(f"{cluster}-mirror")
        full = (spec.get("mirror") or {}).get("topic") or "alerts"
        lean = spec.get("lean") or {}
        # the lean stream (cutouts null), which filters only read: claimed on or off, so that no
        # filter can hold its name when it is turned on (it would write what lean filters read)
        inputs.update({full, f"{full}.lean", *([lean["topic"]] if lean.get("topic") else [])})
    return Claims(frozenset(inputs), frozenset(taken), frozenset(namespaces), frozenset(mirrors))


def _kafka_problem(topic: str) -> str | None:
    if topic in (".", ".."):
        return f"{topic!r} is not a legal Kafka topic name"
    if not _LEGAL.match(topic):
        return f"{topic!r} is not a legal Kafka topic name (letters, digits, '.', '_' and '-' only)"
    if len(topic) > OUTPUT_TOPIC_MAX:
        return (
            f"{topic[:40]!r}... is {len(topic)} characters; at most {OUTPUT_TOPIC_MAX}, so that its dead-letter "
            f"topic ('<topic>{DEAD_LETTER_SUFFIX}') stays within Kafka's {KAFKA_TOPIC_MAX}"
        )
    return None


def output_topic_problem(
    namespace: str, name: str, spec: Mapping[str, Any], claims: Claims, claimed: bool = False
) -> str | None:
    """Why the filter may not have its output topic, or None when it may.

    Args:
        claimed: the filter holds the topic already (it was admitted and its topic made): only the
            rules that never change are checked again, not those another object can come to
            trigger later (a namespace or filter created since), which would strand a running filter.

    The answer names ``spec.output.topic`` and says what the topic collides with (never which
    other filter holds it: that is another tenant's business).
    """
    custom = bool((spec.get("output") or {}).get("topic"))
    out, dlq = filter_topics(namespace, name, spec)
    field = "spec.output.topic" if custom else f"the default output topic {out!r} (set spec.output.topic)"
    where = "spec.output.topic" if custom else field
    problem = _kafka_problem(out) if custom else None
    if problem:
        return f"spec.output.topic: {problem}"
    lowered = out.lower()
    if collision_key(out).endswith(collision_key(DEAD_LETTER_SUFFIX)):
        return f"{where}: names ending in {DEAD_LETTER_SUFFIX!r} are dead-letter topics"
    if lowered.startswith(INTERNAL_PREFIXES) or lowered.endswith(INTERNAL_SUFFIXES) or lowered in INTERNAL_NAMES:
        return f"{where}: {out!r} is an internal topic name of Kafka, MirrorMaker 2 or Strimzi"
    if CANDIDATES_KEY.fullmatch(collision_key(out)):
        return f"{where}: names af.<namespace>.<name>.candidates are filters' candidates topics (the cap stage's input)"
    inputs = {collision_key(t) for t in claims.input_topics}
    if collision_key(out) in inputs or collision_key(dlq) in inputs:
        return f"{where}: {out!r} is (or collides with) a FilterPool's input topic or lean topic"
    # MirrorMaker 2's storage topics: a filter's KafkaTopic would take them over and stop the mirror
    mirror = next((m for m in sorted(claims.mirror_prefixes) if collision_key(out).startswith(collision_key(m))), None)
    if mirror is not None:
        return f"{where}: names starting with {mirror!r} are a FilterPool's MirrorMaker 2 topics"
    if claimed:
        return None
    prefix = name_prefix(out)
    if custom and prefix is not None and prefix != namespace and prefix in claims.namespaces:
        return f"{where}: names starting with '{prefix}.' (or '{prefix}_') belong to namespace {prefix!r}"
    if collision_key(out) in claims.taken or collision_key(dlq) in claims.taken:
        return (
            f"{where}: {out!r} (or its dead-letter topic {dlq!r}) is already the output or dead-letter "
            "topic of another AlertFilter ('.' and '_' count as the same character, as in Kafka)"
        )
    return None


def pool_change_problem(old_pool: str | None, new_pool: str | None, placed_pool: str | None) -> str | None:
    """Why ``spec.pool`` may not change from ``old_pool`` to ``new_pool``, or None when it may.

    Args:
        placed_pool: ``status.pool``, the pool the filter runs in (None when it was never placed).
    """
    if placed_pool is None or new_pool == old_pool or new_pool in (None, placed_pool):
        return None
    return (
        f"spec.pool: the filter runs in FilterPool {placed_pool!r} and its topics live on that pool's Kafka; "
        "it cannot move: create a new AlertFilter instead"
    )
