"""Projected decoding: decode only the fields of an alert that a filter reads.

Decoding is the runner's hot path and its cost follows the number of nested records: a Rubin
alert with ~350 previous detections takes ~10 ms to decode in full with cavro. Most filters read
``diaSource`` and little else. A small C extension (``_avroskip``) skips the Avro body, driven by
a program compiled from the writer schema, and returns where each top-level field starts; only
the fields the filter needs are then decoded (with cavro, from their byte slices). Skipping an
array costs a walk over its items, but in C and without building any Python object.

Inside a history array (an array of records such as ``prvDiaSources``) a filter often reads a few
scalar fields of each record: ``prvDiaSources.psfFlux`` decodes only those, in C, into one small
dict per record (the record's other fields are skipped). ``prvDiaSources[]`` decodes nothing of
the array but keeps its bytes, for :meth:`alertfilter.history.Alert.history` (numpy columns, read
in C); ``prvDiaSources[psfFlux]`` also reads that column in the same walk. Every array of records
the filter reads in any way keeps its bytes so.

Which fields a filter needs comes from, in order:
- the filter's own declaration: a ``fields`` attribute (class style) or a ``fields`` attribute on
  the function, listing field names (``diaSource``, ``prvDiaSources.psfFlux``, ``prvDiaSources[]``);
- else static inference (:func:`infer_fields`): every use of the alert is ``alert["name"]``,
  ``alert.get("name"...)``, ``alert.history("name", ...)`` with literal names, or a loop over
  ``alert["name"]`` whose variable is only read as ``item["field"]`` (see :mod:`.inference`);
- else (anything else done with the alert) the whole alert is decoded.
The visit and id fields' top-level names are always added.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .history import Alert, ArrayShape, SchemaColumns, column_kind
from .inference import infer_fields
from .schemas import define_once

__all__ = ["ProjectedDecoder", "available", "cavro_decoder", "compile_program", "infer_fields", "schema_columns"]

(
    OP_NULL,
    OP_BOOL,
    OP_VARINT,
    OP_FLOAT,
    OP_DOUBLE,
    OP_BYTES,
    OP_FIXED,
    OP_ARRAY,
    OP_MAP,
    OP_UNION,
    OP_RECORD,
    OP_STRING,
    OP_ENUM,
) = range(13)
_PRIMITIVE = {
    "null": OP_NULL,
    "boolean": OP_BOOL,
    "int": OP_VARINT,
    "long": OP_VARINT,
    "float": OP_FLOAT,
    "double": OP_DOUBLE,
    "bytes": OP_BYTES,
    "string": OP_STRING,
}

_avroskip: ModuleType | None
try:
    from . import _avroskip
except ImportError:  # not compiled (no C compiler when installed): projection is off
    _avroskip = None


def available() -> bool:
    """True when the compiled skipper is installed."""
    return _avroskip is not None


def compile_program(schema: dict[str, Any]) -> tuple[bytes, int, list[str]]:
    """Compile a record schema into the skipper's program.

    Returns:
        ``(program, root, field_names)``: the program as packed int32, the root record's node
        index, and the root's field names in order.

    Raises:
        ValueError: the schema is not a record, or names an unknown type.
    """
    prog: list[int] = []
    named: dict[str, int] = {}

    def full(name: str, ns: str | None) -> str:
        return name if "." in name or not ns else f"{ns}.{name}"

    def node(t: Any, ns: str | None) -> int:
        if isinstance(t, str):
            if t in _PRIMITIVE:
                i = len(prog)
                prog.append(_PRIMITIVE[t])
                return i
            key = t if t in named else full(t, ns)
            if key not in named:
                raise ValueError(f"unknown type {t!r}")
            return named[key]
        if isinstance(t, list):
            i = len(prog)
            prog.extend([OP_UNION, len(t)] + [0] * len(t))
            for k, branch in enumerate(t):
                prog[i + 2 + k] = node(branch, ns)
            return i
        kind = t["type"]
        if (kind in _PRIMITIVE and len(t) <= 2) or (kind in _PRIMITIVE and "logicalType" in t):
            return node(kind, ns)
        if kind in ("record", "error"):
            name = full(t["name"], t.get("namespace", ns))
            inner_ns = name.rpartition(".")[0] or None
            i = len(prog)
            fields = t.get("fields", [])
            prog.extend([OP_RECORD, len(fields)] + [0] * len(fields))
            named[name] = i
            for k, f in enumerate(fields):
                prog[i + 2 + k] = node(f["type"], inner_ns)
            return i
        if kind == "enum":
            i = len(prog)
            prog.append(OP_ENUM)
            named[full(t["name"], t.get("namespace", ns))] = i
            return i
        if kind == "fixed":
            i = len(prog)
            prog.extend([OP_FIXED, int(t["size"])])
            named[full(t["name"], t.get("namespace", ns))] = i
            return i
        if kind in ("array", "map"):
            i = len(prog)
            prog.extend([OP_ARRAY if kind == "array" else OP_MAP, 0])
            prog[i + 1] = node(t["items" if kind == "array" else "values"], ns)
            return i
        if kind in _PRIMITIVE:
            return node(kind, ns)
        raise ValueError(f"unsupported type {kind!r}")

    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        raise ValueError("the writer schema is not a record")
    root = node(schema, None)
    return struct.pack(f"<{len(prog)}i", *prog), root, [f["name"] for f in schema["fields"]]


def schema_columns(writer: dict[str, Any], program: bytes | None = None, root: int | None = None) -> SchemaColumns:
    """What :meth:`Alert.history` needs of ``writer``: its top-level arrays of records (possibly
    nullable), each with its item fields, and the compiled program (``program`` and ``root``
    when already compiled).

    Raises:
        ValueError: the schema cannot be compiled.
    """
    import fastavro.schema

    if program is None or root is None:
        program, root, _ = compile_program(writer)
    prog = struct.unpack(f"<{len(program) // 4}i", program)
    expanded: dict[str, Any] = fastavro.schema.expand_schema(writer)  # type: ignore[assignment]
    arrays: dict[str, ArrayShape] = {}
    for i, f in enumerate(expanded["fields"]):
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        arr = [b for b in branches if b != "null"]
        if len(arr) != 1 or not isinstance(arr[0], dict) or arr[0].get("type") != "array":
            continue
        items = arr[0]["items"]
        if isinstance(items, dict) and items.get("type") in ("record", "error"):
            fields = {g["name"]: (k, g["type"]) for k, g in enumerate(items["fields"])}
            arrays[f["name"]] = ArrayShape(prog[root + 2 + i], fields)
    reader = _avroskip.columns if _avroskip is not None else None
    return SchemaColumns(program, arrays, reader)


@dataclass(frozen=True)
class Spec:
    """A field list, split (:func:`parse_spec`).

    Attributes:
        whole: top-level fields decoded whole. items: ``{array: fields}`` decoded in each record.
        columns: ``{array: fields}`` read as columns in the same walk. raw: arrays kept as bytes.
    """

    whole: set[str]
    items: dict[str, set[str]]
    columns: dict[str, set[str]]
    raw: set[str]


def parse_spec(fields: Iterable[str]) -> Spec:
    """Split a field list: ``diaSource`` (whole), ``prvDiaSources.psfFlux`` (that field of each
    record), ``prvDiaSources[psfFlux]`` (its column, for :meth:`Alert.history`), ``prvDiaSources[]``
    (the array's bytes only). A path deeper than two names (``diaSource.a.b``) asks for its
    top-level field whole."""
    spec = Spec(set(), {}, {}, set())
    for f in fields:
        if f.endswith("]") and "[" in f:
            head, _, inner = f[:-1].partition("[")
            spec.raw.add(head)
            if inner:
                spec.columns.setdefault(head, set()).add(inner)
            continue
        head, _, rest = f.partition(".")
        if not rest or "." in rest:
            spec.whole.add(head)
        else:
            spec.items.setdefault(head, set()).add(rest)
    return spec


class ProjectedDecoder:
    """Decodes only ``fields`` of records written with ``writer``; returns an :class:`Alert` of those fields.

    Args:
        writer: the writer schema (self-contained dict).
        fields: what to decode (:func:`parse_spec`): top-level names whole; ``array.field``: only
            those scalar fields of each record of an array of records (the top-level field whole
            when it is no such array, or a field is no scalar); ``array[]``: only the array's bytes,
            for :meth:`Alert.history`. Names the schema lacks are ignored (the filter then sees
            them missing, as with a full decode).
        make_decoder: builds a ``bytes -> value`` decoder from a (self-contained) schema; cavro's.

    Raises:
        ValueError: the schema cannot be compiled (the caller falls back to full decoding).
    """

    def __init__(
        self, writer: dict[str, Any], fields: Iterable[str], make_decoder: Callable[[Any], Callable[[bytes], Any]]
    ) -> None:
        if _avroskip is None:
            raise ValueError("the compiled skipper (_avroskip) is not installed")
        self.program, self.root, names = compile_program(writer)
        import fastavro.schema

        expanded: dict[str, Any] = fastavro.schema.expand_schema(writer)  # type: ignore[assignment]
        self.columns = schema_columns(writer, self.program, self.root)
        ns = _full_namespace(writer)
        spec = parse_spec(fields)
        #: ``(field index, name, decoder of its bytes)`` for whole fields; ``(index, name, plan)``
        #: for arrays read in the skipper's walk (``(0, wanted pairs)``: records, ``(1, indices,
        #: kinds)``: columns); ``(index, name)`` kept as bytes.
        self._take: list[tuple[int, str, Callable[[bytes], Any]]] = []
        self._walk: list[tuple[int, str, tuple[Any, ...]]] = []
        self._raw: list[tuple[int, str]] = []
        #: ``{array: (field, kind, nullable) per column}`` of the column plans.
        self._column_specs: dict[str, list[tuple[str, int, bool]]] = {}
        for i, f in enumerate(expanded["fields"]):
            name, shape = f["name"], self.columns.arrays.get(f["name"])
            subs = spec.items.get(name, set())
            kinds = {w: column_kind(shape.fields[w][1]) for w in subs if w in shape.fields} if shape else {}
            if name in spec.whole or (subs and (shape is None or None in kinds.values())):
                self._take.append((i, name, make_decoder(define_once(f["type"], ns, set()))))
            elif subs and shape is not None:
                self._walk.append((i, name, (0, tuple(sorted((shape.fields[w][0], w) for w in kinds)))))
            elif shape is not None and spec.columns.get(name):
                cols = [(w, shape.fields[w][0], column_kind(shape.fields[w][1])) for w in sorted(spec.columns[name])]
                ok = [(w, k, kind) for w, k, kind in cols if w in shape.fields and kind is not None]
                self._column_specs[name] = [(w, kind[0], kind[1]) for w, _, kind in ok]
                self._walk.append((i, name, (1, tuple(k for _, k, _ in ok), tuple(kind[0] for _, _, kind in ok))))
            if shape is not None and (name in spec.whole or name in spec.items or name in spec.raw):
                self._raw.append((i, name))
        self._plans = {i: plan for i, _, plan in self._walk}
        self.fields = [name for _, name, _ in self._take] + [
            f"{n}.{w}" for _, n, plan in self._walk if plan[0] == 0 for _, w in plan[1]
        ]
        self.skipped = [n for n in names if n not in spec.whole and n not in spec.items]

    def decode(self, body: bytes | memoryview) -> Alert:
        """The record's wanted fields; only their bytes are copied out of ``body``.

        Raises:
            ValueError: corrupt or truncated data, or bytes left over after the record.
        """
        assert _avroskip is not None  # checked by the constructor (compile_program)
        got: dict[int, Any] = {}
        if self._plans:  # the records of arrays are read in the same walk
            off, got = _avroskip.field_offsets(body, self.program, self.root, self._plans)
        else:
            off = _avroskip.field_offsets(body, self.program, self.root)
        if off[-1] != len(body):
            raise ValueError(
                f"{len(body) - off[-1]} bytes left over after the record: the writer schema does not match the data"
            )
        out = {name: dec(bytes(body[off[i] : off[i + 1]])) for i, name, dec in self._take}
        pre: dict[tuple[str, str], tuple[int, bool, Any]] = {}
        for i, name, plan in self._walk:
            if plan[0] == 0:
                out[name] = got[i]
            else:
                for (field, kind, nullable), column in zip(self._column_specs[name], got[i][1], strict=True):
                    pre[(name, field)] = (kind, nullable, column)
        view = memoryview(body)
        raw = {name: bytes(view[off[i] : off[i + 1]]) for i, name in self._raw}
        return Alert(out, self.columns, raw, pre)


def _full_namespace(schema: dict[str, Any]) -> str | None:
    name = str(schema.get("name", ""))
    if "." in name:
        return name.rpartition(".")[0]
    ns = schema.get("namespace")
    return str(ns) if ns is not None else None


def cavro_decoder(schema: Any) -> Callable[[bytes], Any]:
    """A ``bytes -> value`` decoder for ``schema`` with cavro (records as dicts, as fastavro gives)."""
    import cavro  # type: ignore[import-not-found]  # cavro ships no type hints

    opts = cavro.DEFAULT_OPTIONS.replace(record_decodes_to_dict=True, allow_invalid_default_values=True)
    decode: Callable[[bytes], Any] = cavro.Schema(json.dumps(schema), options=opts).binary_decode
    return decode
