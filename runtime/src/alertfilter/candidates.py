"""Candidate records: an accepted alert on its way to the cap stage, when several replicas share a
filter's per-visit cap (``--cap-stage``).

A replica sends each alert its filter accepts to the filter's candidates topic
(``af.<namespace>.<name>.candidates`` in a cluster) instead of the output topic:

- value: the input message's value, as it is;
- key: the visit id as JSON (``12`` and ``"12"`` are different visits), so that every candidate
  of a visit lands in one partition, read by one cap stage in the order the topic holds them;
- headers: the input message's own (without any ``alertfilter.*`` one: those never pass the
  runner), then ``alertfilter.candidate.topic``, ``.partition``, ``.offset`` (the input message:
  the cap stage counts a source once per visit), ``.key`` (the input message's key; absent when
  it had none), ``.alert-id`` (when known) and ``.generation`` (the replay request the input was
  read under, :mod:`alertfilter.positions`; absent before any replay).

The cap stage rebuilds the input message from it (:func:`parse_candidate`) and forwards it as the
runner does with one replica: the original value, key and headers, plus the provenance headers.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

#: Headers the runner adds to a candidate (every header the runner writes starts with ``alertfilter.``).
H_TOPIC = "alertfilter.candidate.topic"
H_PARTITION = "alertfilter.candidate.partition"
H_OFFSET = "alertfilter.candidate.offset"
H_KEY = "alertfilter.candidate.key"
H_ALERT_ID = "alertfilter.candidate.alert-id"
H_GENERATION = "alertfilter.candidate.generation"
_OWN_PREFIX = "alertfilter."
#: Partitions of a candidates topic. Fixed for the topic's life: more partitions would move visits
#: between partitions (and their ledgers) mid-visit. A visit's candidates all go to one partition, so
#: more partitions add no speed to a visit; they only spread visits among the replicas' cap stages.
CANDIDATES_PARTITIONS = 3

Headers = list[tuple[str, bytes | None]]

#: The runner's options of the cap stage, spliced into :data:`alertfilter.settings.OPTIONS`:
#: ``(name, help, flag)``.
CAP_STAGE_OPTIONS: tuple[tuple[str, str, bool], ...] = (
    (
        "candidates-topic",
        (
            "the filter's candidates topic (internal: the operator names and creates it). With --cap-stage, "
            "accepted alerts go there keyed by visit and a cap stage forwards the first N of each visit; without, "
            "the runner first forwards what a cap stage left there, then caps in its own process"
        ),
        False,
    ),
    (
        "cap-stage",
        (
            "several replicas share the per-visit cap: accepted alerts go to --candidates-topic and the cap stage "
            "of each replica (one consumer group, a share of its partitions) forwards the first N alerts of each visit"
        ),
        True,
    ),
)


#: The cap stage's consumer group is the filter's group with this suffix.
CAP_GROUP_SUFFIX = ".cap"


def cap_group(group: str) -> str:
    """The cap stage's consumer group on the candidates topic: ``<group>.cap``."""
    return group + CAP_GROUP_SUFFIX


def candidates_problem(s: Any) -> str | None:
    """Why the runner's settings ``s`` (:class:`~alertfilter.settings.RunnerSettings`) cannot go with
    their candidates topic and cap stage, or None."""
    if s.cap_stage and not s.candidates_topic:
        return "--cap-stage needs --candidates-topic"
    if s.candidates_topic in (s.input_topic, s.output_topic, s.dead_letter_topic):
        return f"the candidates topic {s.candidates_topic!r} cannot be the input, output or dead-letter topic"
    return None


def visit_key(visit: Hashable) -> bytes:
    """A candidate's key: the visit id as compact JSON (an ``int`` or a ``str``)."""
    return json.dumps(visit, separators=(",", ":"), ensure_ascii=False).encode()


def _own(name: str | bytes) -> bool:
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return text.lower().startswith(_OWN_PREFIX)


def candidate_headers(m: Any, alert_id: Any, generation: int = 0) -> Headers:
    """The headers of the candidate of input message ``m``, read under replay request
    ``generation`` (0: none; see the module's docstring)."""
    out: Headers = [(k, v) for k, v in _named(m.headers() or []) if not _own(k)]
    out += [
        (H_TOPIC, m.topic().encode()),
        (H_PARTITION, str(m.partition()).encode()),
        (H_OFFSET, str(m.offset()).encode()),
    ]
    if m.key() is not None:
        out.append((H_KEY, m.key()))
    if alert_id is not None and alert_id != "":
        out.append((H_ALERT_ID, str(alert_id).encode("utf-8", "replace")[:1000]))
    if generation:
        out.append((H_GENERATION, str(generation).encode()))
    return out


class SourceMessage:
    """The input message a candidate came from, as a message of the consumer (``topic()``,
    ``partition()``, ``offset()``, ``value()``, ``key()``, ``headers()``, ``error()``): what the
    :class:`~alertfilter.sink.Sink` forwards or dead-letters."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_topic", "_value")

    def __init__(
        self, topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None, headers: Headers
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._value, self._key, self._headers = value, key, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> Headers:
        return self._headers

    def error(self) -> None:
        return None


@dataclass(frozen=True)
class Candidate:
    """One candidate as the cap stage reads it.

    Attributes:
        visit: the visit id (``int`` or ``str``). source: the input message's (topic, partition, offset).
        alert_id: the alert id the runner read (text), or None. message: the input message.
        generation: the replay request the input was read under (0: none).
    """

    visit: Hashable
    source: tuple[str, int, int]
    alert_id: str | None
    message: SourceMessage
    generation: int = 0


def parse_candidate(m: Any) -> Candidate:
    """The candidate that the candidates topic's message ``m`` holds.

    Raises:
        ValueError: ``m`` is not a candidate (no visit key, no source header); only the filter's
            own runners may write the candidates topic, so this is a bug or a stranger's record.
    """
    try:
        visit = json.loads(m.key() or b"")
    except ValueError:
        raise ValueError(f"the key {m.key()!r} is not a visit id in JSON") from None
    if isinstance(visit, bool) or not isinstance(visit, (int, str)):
        raise ValueError(f"the key {m.key()!r} is not an integer or string visit id")
    own: dict[str, bytes | None] = {}
    headers: Headers = []
    for k, v in _named(m.headers() or []):
        if _own(k):
            own[k] = v
        else:
            headers.append((k, v))
    try:
        topic = (own[H_TOPIC] or b"").decode()
        partition, offset = int(own[H_PARTITION] or b""), int(own[H_OFFSET] or b"")
        generation = int(own.get(H_GENERATION) or b"0")
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ValueError("the source headers (alertfilter.candidate.topic, partition, offset) are missing") from None
    alert_id = own.get(H_ALERT_ID)
    message = SourceMessage(topic, partition, offset, m.value(), own.get(H_KEY), headers)
    text_id = alert_id.decode("utf-8", "replace") if alert_id else None
    return Candidate(visit, (topic, partition, offset), text_id, message, generation)


def _named(headers: Iterable[tuple[str | bytes, bytes | None]]) -> Headers:
    return [(k if isinstance(k, str) else k.decode("utf-8", "replace"), v) for k, v in headers]
