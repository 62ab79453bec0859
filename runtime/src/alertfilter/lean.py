"""Lean alerts: the same Avro message with its cutouts set to null, made by splicing the body.

Almost every byte of a Rubin alert is its three cutouts (``cutoutDifference``, ``cutoutScience``,
``cutoutTemplate``: 107,712 of a mean 108,288 bytes in the shared real alerts), and almost no
filter reads them. A pool's lean stream (``alertfilter lean``, :mod:`alertfilter.leanstream`)
carries each alert of the full stream with those fields null, under the same writer schema and
schema id, so that any reader decodes it as it decodes the original.

It is never decoded and re-encoded: the compiled skipper (``_avroskip``, :mod:`.projection`) gives
where each top-level field of the body starts, and each cutout's bytes (its union branch and
value) are replaced by the encoding of the union's ``null`` branch (the zigzag varint of its
index: ``b"\\x00"`` for ``["null", "bytes"]``). Everything else is copied as it is.

Which fields are cutouts comes from the survey the writer schema names (:mod:`.surveys`: Rubin
v10/v11 and ZTF have three, the simulated 2018 ``lsst.alert`` two); a schema no survey claims is
taken to name them as Rubin does, when it has fields of those names. A cutout that is not a
nullable union cannot be nulled without changing the schema: :class:`Splicer` refuses the schema
(:class:`NotSpliceable`), and the lean producer forwards such alerts whole.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from . import projection as _projection
from .projection import available, compile_program
from .surveys import schema_full_name, survey_of

__all__ = ["CUTOUT_FIELDS", "NotSpliceable", "Splicer", "cutout_fields", "reads_cutouts", "splice_confluent"]

#: The compiled skipper (None when not compiled: no lean stream; the command says so).
_avroskip: Any = _projection._avroskip

#: Every top-level field any known survey keeps a cutout in.
CUTOUT_FIELDS = frozenset({"cutoutDifference", "cutoutScience", "cutoutTemplate"})
#: The lean producer's default largest record, bytes: the pool Kafka's 10 MiB (a record forwarded
#: whole keeps its size) plus room for the lean headers; the lean topic's ``max.message.bytes``.
DEFAULT_LEAN_MAX_MESSAGE_BYTES = 10 * 1024 * 1024 + 64 * 1024
#: The Confluent wire format's header: magic byte 0, then the schema id (big-endian, 4 bytes).
CONFLUENT_HEADER = struct.Struct(">bI")


#: Headers the lean producer adds to each lean message: where its original is in the full stream.
H_LEAN_PREFIX = "alertfilter.lean."
H_LEAN_TOPIC = "alertfilter.lean.source-topic"
H_LEAN_PARTITION = "alertfilter.lean.source-partition"
H_LEAN_OFFSET = "alertfilter.lean.source-offset"
#: On a message forwarded whole because it could not be spliced: why (``schema-refused``...).
H_LEAN_UNSPLICED = "alertfilter.lean.unspliced"


class NotSpliceable(ValueError):
    """A writer schema (or a message) whose cutouts cannot be nulled by splicing; ``str()`` says why.

    Attributes:
        reason: a short word for headers and metrics (``schema-refused``, ``not-confluent``,
            ``unknown-schema``, ``schema-unavailable``).
    """

    def __init__(self, message: str, reason: str = "schema-refused") -> None:
        super().__init__(message)
        self.reason = reason


def cutout_fields(writer: dict[str, Any]) -> list[str]:
    """The top-level fields of ``writer`` that hold cutouts, in the schema's order: those of the
    survey its name tells (:func:`alertfilter.surveys.survey_of`), else any of
    :data:`CUTOUT_FIELDS` it has."""
    survey = survey_of(schema_full_name(writer))
    wanted = {path.split(".")[0] for _, path in survey.cutouts} if survey is not None else set(CUTOUT_FIELDS)
    return [f["name"] for f in writer.get("fields", []) if isinstance(f, dict) and f.get("name") in wanted]


def _zigzag_varint(n: int) -> bytes:
    """Avro's encoding of the int ``n`` (zigzag, then base-128 varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _null_branch(field: dict[str, Any], schema_name: str) -> bytes:
    """The encoding of ``field``'s null value: its union's ``null`` branch index.

    Raises:
        NotSpliceable: the field is not a union with a ``null`` branch.
    """
    t = field.get("type")
    if isinstance(t, list):
        for k, branch in enumerate(t):
            if branch == "null" or (isinstance(branch, dict) and branch.get("type") == "null" and len(branch) == 1):
                return _zigzag_varint(k)
    shown = t if isinstance(t, str | list) else (t or {}).get("type", t)
    raise NotSpliceable(
        f"the cutout field {field.get('name')!r} of schema {schema_name or '(unnamed)'} is {shown!r}, not a "
        'nullable union (such as ["null", "bytes"]): it cannot be set to null without changing the schema'
    )


class Splicer:
    """Sets the cutout fields of Avro bodies written with ``writer`` to null, by splicing.

    Args:
        writer: the writer schema (self-contained dict).
        fields: the top-level fields to null; default :func:`cutout_fields`.

    Attributes:
        fields: the fields nulled, in the schema's order (empty: bodies are returned as they are).

    Raises:
        NotSpliceable: a field to null is not a nullable union, or the skipper is not installed.
        ValueError: the schema cannot be compiled.
    """

    def __init__(self, writer: dict[str, Any], fields: Iterable[str] | None = None) -> None:
        if not available() or _avroskip is None:
            raise NotSpliceable("the compiled skipper (_avroskip) is not installed")
        name = schema_full_name(writer)
        self.program, self.root, names = compile_program(writer)
        wanted = set(cutout_fields(writer) if fields is None else fields)
        by_name = {f["name"]: f for f in writer["fields"]}
        self.fields = [n for n in names if n in wanted]
        #: ``(field index, encoding of its null)`` of each field to null, in order.
        self._nulls = [(names.index(n), _null_branch(by_name[n], name)) for n in self.fields]

    def splice(self, body: bytes | memoryview) -> bytes:
        """``body`` with every cutout field null; the other fields' bytes unchanged.

        Raises:
            ValueError: corrupt or truncated data, or bytes left over after the record.
        """
        off = _avroskip.field_offsets(body, self.program, self.root)
        if off[-1] != len(body):
            raise ValueError(
                f"{len(body) - off[-1]} bytes left over after the record: the writer schema does not match the data"
            )
        view = memoryview(body)
        parts: list[bytes | memoryview] = []
        start = 0
        for i, null in self._nulls:
            parts.append(view[start : off[i]])
            parts.append(null)
            start = off[i + 1]
        parts.append(view[start:])
        return b"".join(parts)

    def saved(self, body: bytes | memoryview) -> int:
        """Bytes the splice of ``body`` removes (for reports; walks the body once)."""
        off = _avroskip.field_offsets(body, self.program, self.root)
        return sum(off[i + 1] - off[i] - len(null) for i, null in self._nulls)


def splice_confluent(value: bytes | memoryview, splicer_for: Any) -> bytes:
    """A Confluent-wire message with its cutouts null: the same header (magic byte, schema id),
    the spliced body. ``splicer_for(schema_id)`` gives the :class:`Splicer` of a schema id.

    Raises:
        NotSpliceable: not a Confluent-wire message, or its schema refused (as ``splicer_for`` raises).
        ValueError: a corrupt body.
    """
    if value is None or len(value) < CONFLUENT_HEADER.size:
        raise NotSpliceable(
            f"a message of {len(value or b'')} bytes is shorter than the 5-byte Confluent header", "not-confluent"
        )
    magic, schema_id = CONFLUENT_HEADER.unpack_from(value)
    if magic != 0:
        raise NotSpliceable(f"magic byte is {value[0]}, expected 0 (Confluent wire format)", "not-confluent")
    splicer: Splicer = splicer_for(schema_id)
    return bytes(value[: CONFLUENT_HEADER.size]) + splicer.splice(memoryview(value)[CONFLUENT_HEADER.size :])


def reads_cutouts(fields: Iterable[str] | None) -> bool:
    """Whether a filter reading ``fields`` (declared or inferred, as :func:`alertfilter.decoding.decode_fields`
    gives them: top-level names, ``array.field``, ``array[field]``) needs the cutouts; True when
    ``fields`` is None (unknown: everything is decoded)."""
    if fields is None:
        return True
    return any(f.partition(".")[0].partition("[")[0] in CUTOUT_FIELDS for f in fields)
