"""Projected decoding: decode only the top-level fields of an alert that a filter reads.

Decoding is the runner's hot path and its cost follows the number of nested records: a Rubin
alert with ~350 previous detections takes ~10 ms to decode in full with cavro. Most filters read
``diaSource`` and little else. A small C extension (``_avroskip``) skips the Avro body, driven by
a program compiled from the writer schema, and returns where each top-level field starts; only
the fields the filter needs are then decoded (with cavro, from their byte slices). Skipping an
array costs a walk over its items, but in C and without building any Python object.

Which fields a filter needs comes from, in order:
- the filter's own declaration: a ``fields`` attribute (class style) or a ``fields`` attribute on
  the function, listing top-level field names;
- else static inference (:func:`infer_fields`): every use of the alert is ``alert["name"]`` or
  ``alert.get("name"...)`` with a literal name;
- else (anything else done with the alert) the whole alert is decoded.
The visit and id fields' top-level names are always added.
"""

from __future__ import annotations

import ast
import json
import struct
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from .bindings import read_bindings
from .schemas import define_once

OP_NULL, OP_BOOL, OP_VARINT, OP_FLOAT, OP_DOUBLE, OP_BYTES, OP_FIXED, OP_ARRAY, OP_MAP, OP_UNION, OP_RECORD = range(11)
_PRIMITIVE = {
    "null": OP_NULL,
    "boolean": OP_BOOL,
    "int": OP_VARINT,
    "long": OP_VARINT,
    "float": OP_FLOAT,
    "double": OP_DOUBLE,
    "bytes": OP_BYTES,
    "string": OP_BYTES,
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
            prog.append(OP_VARINT)
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


class ProjectedDecoder:
    """Decodes only ``fields`` of records written with ``writer``; returns a dict of those fields.

    Args:
        writer: the writer schema (self-contained dict).
        fields: top-level field names to decode; names the schema lacks are ignored (the filter
            then sees them missing, as with a full decode).
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
        ns = _full_namespace(writer)
        wanted = set(fields)
        self._take: list[tuple[int, str, Callable[[bytes], Any]]] = []
        for i, f in enumerate(expanded["fields"]):
            if f["name"] in wanted:
                self._take.append((i, f["name"], make_decoder(define_once(f["type"], ns, set()))))
        self.fields = [name for _, name, _ in self._take]
        self.skipped = [n for n in names if n not in wanted]

    def decode(self, body: bytes | memoryview) -> dict[str, Any]:
        """The record's wanted fields; only their bytes are copied out of ``body``.

        Raises:
            ValueError: corrupt or truncated data, or bytes left over after the record.
        """
        assert _avroskip is not None  # checked by the constructor (compile_program)
        off: list[int] = _avroskip.field_offsets(body, self.program, self.root)
        if off[-1] != len(body):
            raise ValueError(
                f"{len(body) - off[-1]} bytes left over after the record: the writer schema does not match the data"
            )
        return {name: dec(bytes(body[off[i] : off[i + 1]])) for i, name, dec in self._take}


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


# --- which fields does a filter read? --------------------------------------------------------------
def _alert_param(fn: ast.FunctionDef, method: bool) -> str | None:
    args = [*fn.args.posonlyargs, *fn.args.args][1 if method else 0 :]
    return args[0].arg if args else None


def _fields_used(fn: ast.FunctionDef, param: str) -> set[str] | None:
    """Top-level names read from ``param`` in ``fn``; None when the alert is used any other way."""
    used: set[str] = set()
    allowed: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == param:
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)) or not isinstance(
                node.ctx, ast.Load
            ):
                return None
            used.add(node.slice.value)
            allowed.add(id(node.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == param
        ):
            if (
                node.func.attr != "get"
                or not node.args
                or not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))
            ):
                return None
            used.add(node.args[0].value)
            allowed.add(id(node.func.value))
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id == param and id(node) not in allowed:
            return None  # passed on, iterated, rebound, compared...: it needs the whole alert
    for node in ast.walk(fn):  # a nested def/lambda that shadows or closes over the alert: be safe
        if isinstance(node, (ast.FunctionDef, ast.Lambda, ast.AsyncFunctionDef)) and node is not fn:
            return None
    return used


#: Names whose use anywhere in the source may read the alert out of sight of :func:`_fields_used`.
_DOUBTFUL = frozenset({"getattr", "f_locals", "_getframe", "currentframe", "f_back", "gi_frame", "tb_frame"})


def infer_fields(source: str, name: str) -> set[str] | None:
    """The top-level alert fields the filter ``name`` in ``source`` reads, or None when unknown.

    A class-style filter is analysed through its ``filter`` method, a function directly. The
    inference is conservative, any doubt gives None (decode everything): the name bound more than
    once or inside an ``if``/``try``, a decorator, a ``filter`` the class does not define itself,
    ``eval``/``exec``/``getattr``/``globals()``/``vars()``/``__dict__``/frames anywhere in the source,
    or any use of the alert other than ``alert["x"]`` or ``alert.get("x", ...)`` with literal names.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    bindings = read_bindings(tree)
    if bindings.dynamic or any(
        (isinstance(n, ast.Name) and n.id in _DOUBTFUL) or (isinstance(n, ast.Attribute) and n.attr in _DOUBTFUL)
        for n in ast.walk(tree)
    ):
        return None
    b = bindings.get(name)
    node = b.node if b.certain else None
    if isinstance(node, ast.FunctionDef) and not node.decorator_list:
        param = _alert_param(node, method=False)
        return _fields_used(node, param) if param else None
    if isinstance(node, ast.ClassDef) and not node.decorator_list:
        defs = [s for s in node.body if _binds(s, "filter")]
        if len(defs) == 1 and isinstance(defs[0], ast.FunctionDef) and not defs[0].decorator_list:
            param = _alert_param(defs[0], method=True)
            return _fields_used(defs[0], param) if param else None
    return None


def _binds(stmt: ast.stmt, name: str) -> bool:
    """True when the class-body statement ``stmt`` may bind ``name``."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return stmt.name == name
    if isinstance(stmt, ast.Expr | ast.Pass):
        return False
    return any(
        isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load) for n in ast.walk(stmt)
    ) or (
        not isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign)  # an if/for/try/import in the body: doubt
    )
