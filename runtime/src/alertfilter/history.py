"""Alerts as filters see them, and the columnar view of their histories.

An :class:`Alert` is the plain ``dict`` of the decoded alert (``alert["diaSource"]["psfFlux"]``
works as ever) with one method more, :meth:`Alert.history`: numpy arrays of chosen fields across
the records of a history array such as ``prvDiaSources``, read straight from the message's bytes
by the compiled skipper when the runtime kept them (``_avroskip.columns``), else from the decoded
records. Either way the arrays are the same; the first never builds a dict per record.

Column kinds follow the writer schema of the field (a union with ``null`` is *nullable*):

==================  ===========================================================================
Avro type           column
==================  ===========================================================================
float, double       ``float64``; a null is NaN
int, long           ``int64``; nullable: a ``numpy.ma.MaskedArray`` (null masked)
boolean             ``bool``; nullable: a ``numpy.ma.MaskedArray``
string, bytes,      ``object`` array of the values as decoded (``None`` for null)
other unions
==================  ===========================================================================

Fields of other types (records, arrays, maps, enums, fixed, logical types) are not columns:
:meth:`Alert.history` raises TypeError for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

COL_FLOAT, COL_INT, COL_BOOL, COL_OBJECT = range(4)
_SCALARS = {"float": COL_FLOAT, "double": COL_FLOAT, "int": COL_INT, "long": COL_INT, "boolean": COL_BOOL}
_OBJECTS = frozenset({"string", "bytes", "null"})

#: ``columns(body, program, node, wanted, kinds) -> (n, columns)``: ``_avroskip.columns``.
ColumnReader = Callable[[bytes, bytes, int, tuple[int, ...], tuple[int, ...]], tuple[int, tuple[Any, ...]]]


def column_kind(avro_type: Any) -> tuple[int, bool] | None:
    """``(kind, nullable)`` of a record field of type ``avro_type`` (kinds: ``COL_*``), or None
    when it is no column (a record, an array, an enum, a logical type...)."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    names = [b for b in branches if isinstance(b, str)]
    if len(names) != len(branches) or not all(n in _SCALARS or n in _OBJECTS for n in names):
        return None
    nullable = "null" in names
    rest = [n for n in names if n != "null"]
    if len(rest) == 1 and rest[0] in _SCALARS:
        return _SCALARS[rest[0]], nullable
    return COL_OBJECT, nullable


@dataclass(frozen=True)
class ArrayShape:
    """A top-level field whose values are arrays of records (or null), as the skipper reads it.

    Attributes:
        node: its type's node in the compiled program. fields: each item field's ``(index, type)``.
    """

    node: int
    fields: dict[str, tuple[int, Any]]


@dataclass(frozen=True)
class SchemaColumns:
    """What :meth:`Alert.history` needs of one writer schema.

    Attributes:
        program: the compiled schema (:func:`alertfilter.projection.compile_program`).
        arrays: the top-level arrays of records, by name. reader: ``_avroskip.columns``, or None.
    """

    program: bytes
    arrays: dict[str, ArrayShape]
    reader: ColumnReader | None = None

    def kind(self, array: str, name: str) -> tuple[int, int, bool]:
        """``(item field index, kind, nullable)`` of ``array``'s records' field ``name``.

        Raises:
            KeyError: the records have no such field. TypeError: the field is no column.
        """
        shape = self.arrays[array]
        if name not in shape.fields:
            raise KeyError(f"the records of {array!r} have no field {name!r}")
        index, avro_type = shape.fields[name]
        kind = column_kind(avro_type)
        if kind is None:
            raise TypeError(
                f"{array}.{name} is not a number, boolean or string field; read it as alert[{array!r}][i][{name!r}]"
            )
        return index, kind[0], kind[1]


def finish(kind: int, nullable: bool, data: Any, mask: Any) -> Any:
    """The numpy column of ``kind`` from the skipper's ``(data, mask)`` bytes, or a list (objects)."""
    import numpy as np

    if kind == COL_OBJECT:
        out = np.empty(len(data), dtype=object)
        out[:] = data
        return out
    dtype: Any = {COL_FLOAT: np.float64, COL_INT: np.int64, COL_BOOL: np.bool_}[kind]
    values: Any = np.frombuffer(data, dtype=dtype).copy()
    if kind == COL_FLOAT or not nullable:
        return values
    return np.ma.MaskedArray(values, mask=np.frombuffer(mask, dtype=np.bool_).copy())


def columns_from_records(records: Sequence[dict[str, Any]] | None, specs: Sequence[tuple[str, int, bool]]) -> list[Any]:
    """The columns of decoded ``records`` (None: a null array) for ``(name, kind, nullable)``
    specs: the same arrays :meth:`Alert.history` reads from bytes."""
    import struct

    out = []
    for name, kind, nullable in specs:
        values: list[Any] = [r[name] for r in records or ()]
        if kind == COL_OBJECT:
            out.append(finish(kind, nullable, values, b""))
            continue
        mask = bytes(v is None for v in values)
        if kind == COL_FLOAT:
            data = struct.pack(f"={len(values)}d", *(float("nan") if v is None else v for v in values))
        elif kind == COL_INT:
            data = struct.pack(f"={len(values)}q", *(0 if v is None else v for v in values))
        else:
            data = bytes(bool(v) for v in values)
        out.append(finish(kind, nullable, data, mask))
    return out


class Alert(dict[str, Any]):
    """A decoded alert: a ``dict`` (nested dicts, lists, ``bytes``, ``None``), plus
    :meth:`history`. Built by the decoders; filters never need to build one."""

    __slots__ = ("_columns", "_pre", "_raw")

    def __init__(
        self,
        fields: dict[str, Any],
        columns: SchemaColumns | None = None,
        raw: dict[str, bytes] | None = None,
        pre: dict[tuple[str, str], tuple[int, bool, Any]] | None = None,
    ) -> None:
        super().__init__(fields)
        self._columns = columns
        self._raw = raw or {}
        #: Columns read while decoding: ``{(array, field): (kind, nullable, the skipper's column)}``.
        self._pre = pre or {}

    def history(self, array: str, *fields: str) -> Any:
        """Columns of ``fields`` across the records of the history ``array``, in order: one numpy
        array per field (a tuple of them for several fields), all of the array's length; a null
        array gives empty columns. Kinds: see :mod:`alertfilter.history`.

        ``flux, mjd, band = alert.history("prvDiaSources", "psfFlux", "midpointMjdTai", "band")``

        Raises:
            KeyError: the alert has no ``array`` (or it was not decoded: the filter does not read
                it), or its records have no such field.
            TypeError: no field named, ``array`` is not an array of records, or a field is no column.
        """
        if not fields:
            raise TypeError("history() needs the names of the fields to read")
        if self._pre and all((array, f) in self._pre for f in fields):
            out = [finish(*_unpacked(*self._pre[(array, f)])) for f in fields]
            return out[0] if len(out) == 1 else tuple(out)
        cols = self._columns
        if cols is None or array not in cols.arrays:
            if cols is not None and array in self and array not in cols.arrays:
                raise TypeError(f"{array!r} is not an array of records")
            out = _columns_from_values(self[array], fields)
        else:
            specs = [cols.kind(array, f) for f in fields]
            raw = self._raw.get(array)
            if raw is not None and cols.reader is not None:
                _, got = cols.reader(
                    raw, cols.program, cols.arrays[array].node, tuple(s[0] for s in specs), tuple(s[1] for s in specs)
                )
                out = [finish(*_unpacked(kind, nullable, g)) for g, (_, kind, nullable) in zip(got, specs, strict=True)]
            else:
                out = columns_from_records(self[array], [(f, s[1], s[2]) for f, s in zip(fields, specs, strict=True)])
        return out[0] if len(out) == 1 else tuple(out)


def _unpacked(kind: int, nullable: bool, column: Any) -> tuple[int, bool, Any, Any]:
    """:func:`finish`'s arguments for a column of the skipper (``(data, mask)``, or a list)."""
    data, mask = (column, b"") if kind == COL_OBJECT else column
    return kind, nullable, data, mask


def _columns_from_values(records: Any, fields: Sequence[str]) -> list[Any]:
    """Columns without a schema (the container format): kinds from the values themselves."""
    specs = []
    for name in fields:
        values = [r[name] for r in records or ()]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            kind = COL_BOOL
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            kind = COL_INT
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            kind = COL_FLOAT
        else:
            kind = COL_OBJECT
        specs.append((name, kind, len(present) < len(values)))
    return columns_from_records(records, specs)
