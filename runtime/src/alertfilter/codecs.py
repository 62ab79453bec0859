"""Decoding alerts from Kafka message values.

Formats (``--format``):

- ``confluent``: the Confluent wire format: byte 0 is 0, bytes 1-4 a big-endian unsigned schema
  id, then a schemaless Avro body written with that schema (how Rubin publishes alerts).
- ``schemaless``: a bare Avro body written with one configured schema.
- ``container``: one Avro object container file per message, its writer schema in its header
  (how ZTF publishes alerts).

Backends: ``fastavro`` (reference) and ``cavro`` (a Cython codec, several times faster here; see
``bench/RESULTS.md``). Both return the same plain dicts, as :class:`alertfilter.history.Alert`
(a ``dict`` with :meth:`~alertfilter.history.Alert.history`).
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from typing import Any, cast

import fastavro

from . import projection
from .history import Alert, SchemaColumns
from .projection import ProjectedDecoder, cavro_decoder, schema_columns
from .schemas import FAILURE_TTL_S, SchemaNotFound, SchemaSource, SchemaSourceError

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
FORMATS = ("confluent", "schemaless", "container")
BACKENDS = ("fastavro", "cavro")


_NOTHING = object()
#: A message value as the decoders take it: bytes, or a view of the filter process's shared region.
Body = bytes | memoryview


class DecodeError(ValueError):
    """A message value is not a decodable alert; ``str()`` says why."""


def _fastavro_reader(writer: dict[str, Any], reader: dict[str, Any] | None) -> Callable[[Body], Any]:
    parsed_w = fastavro.parse_schema(writer)
    parsed_r = fastavro.parse_schema(reader) if reader is not None else None
    schemaless_reader = fastavro.schemaless_reader

    def decode(body: Body) -> Any:
        bio = io.BytesIO(body)
        record = schemaless_reader(bio, parsed_w, parsed_r)
        if bio.tell() != len(body):
            raise DecodeError(
                f"{len(body) - bio.tell()} bytes left over after the record: the writer schema does not match the data"
            )
        return record

    return decode


def _cavro_reader(writer: dict[str, Any], reader: dict[str, Any] | None) -> Callable[[Body], Any]:
    import cavro  # type: ignore[import-not-found]  # cavro ships no type hints

    # allow_invalid_default_values: ZTF's schemas carry defaults that do not match their types.
    opts = cavro.DEFAULT_OPTIONS.replace(record_decodes_to_dict=True, allow_invalid_default_values=True)
    w = cavro.Schema(json.dumps(writer), options=opts)
    target = w if reader is None else cavro.Schema(json.dumps(reader), options=opts).reader_for_writer(w)
    decode = cast(Callable[[bytes], Any], target.binary_decode)
    return lambda body: decode(bytes(body))  # cavro takes bytes only (bytes(b) of bytes is b itself)


_BACKENDS: dict[str, Callable[[dict[str, Any], dict[str, Any] | None], Callable[[Body], Any]]] = {
    "fastavro": _fastavro_reader,
    "cavro": _cavro_reader,
}


class Decoder:
    """Decodes message values to alert dicts.

    Args:
        fmt: one of :data:`FORMATS`.
        schemas: resolves schema ids (``confluent`` format).
        schema: the writer schema (``schemaless`` format).
        reader_schema: optional reader schema; fields it lacks are skipped, as Avro resolution says.
        backend: one of :data:`BACKENDS`.
        fields: top-level fields to decode (projected decoding, see ``projection.py``); None for
            all. Used with the cavro backend, no reader schema, and the compiled skipper installed;
            otherwise every field is decoded.

    Raises:
        ValueError: for an unknown format or backend, or a format without what it needs.
    """

    def __init__(
        self,
        fmt: str = "confluent",
        schemas: SchemaSource | None = None,
        schema: dict[str, Any] | None = None,
        reader_schema: dict[str, Any] | None = None,
        backend: str = "fastavro",
        fields: frozenset[str] | set[str] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown decoder backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if fmt == "confluent" and schemas is None:
            raise ValueError("the confluent format needs a schema source (--schema-dir or --schema-registry)")
        if fmt == "schemaless" and schema is None:
            raise ValueError("the schemaless format needs the writer schema (--schema)")
        self.fmt = fmt
        self.schemas = schemas
        self.reader_schema = reader_schema
        self.backend = backend
        self._make = self._make_whole
        self.fields = frozenset(fields) if fields is not None else None
        self.projected = False  # set once a projected decoder is in use
        if self.fields is not None and reader_schema is None and backend == "cavro" and projection.available():
            self._make = self._make_projected
        self._by_id: dict[int, Callable[[Body], Any]] = {}
        self._unusable: dict[int, tuple[float, SchemaSourceError]] = {}
        self._schemaless = self._make(schema, reader_schema) if schema is not None else None
        self.last_schema_id: int | None = None

    def projects(self) -> bool:
        """True when this decoder decodes only ``fields`` (projected decoding is available and applies)."""
        return self.fields is not None and self._make == self._make_projected

    def _make_projected(self, writer: dict[str, Any], reader: dict[str, Any] | None) -> Callable[[Body], Any]:
        """A projected decoder for ``writer``; the full cavro decoder when the schema cannot be compiled."""
        try:
            dec = ProjectedDecoder(writer, self.fields or (), cavro_decoder)
        except ValueError:
            return _whole(_cavro_reader(writer, reader), writer, reader)
        self.projected = True
        return dec.decode

    def _make_whole(self, writer: dict[str, Any], reader: dict[str, Any] | None) -> Callable[[Body], Any]:
        """The backend's full decoder for ``writer``, its records as :class:`Alert`."""
        return _whole(_BACKENDS[self.backend](writer, reader), writer, reader)

    def _for_id(self, schema_id: int) -> Callable[[Body], Any]:
        dec = self._by_id.get(schema_id)
        if dec is None:
            assert self.schemas is not None
            failed = self._unusable.get(schema_id)
            if failed is not None and time.monotonic() - failed[0] < FAILURE_TTL_S:
                raise failed[1]
            try:
                writer = self.schemas.get(schema_id)
            except SchemaNotFound as exc:
                raise DecodeError(str(exc)) from None
            try:
                dec = self._make(writer, self.reader_schema)
            except Exception as exc:  # noqa: BLE001 - a schema that cannot be parsed or resolved
                err = SchemaSourceError(f"schema id {schema_id} cannot be used: {type(exc).__name__}: {exc}")
                self._unusable[schema_id] = (time.monotonic(), err)
                raise err from None
            self._unusable.pop(schema_id, None)
            self._by_id[schema_id] = dec
        return dec

    def decode(self, value: bytes | memoryview | None) -> Alert:
        """Decode one message value (``bytes``, or a view of the filter process's shared region:
        the projected decoder then copies only the fields it decodes).

        Raises:
            DecodeError: empty value, wrong magic byte, unknown schema id, truncated or corrupt body,
                a container holding other than one record, or a value that is not a record.
            SchemaSourceError: the schema of the message's id cannot be had now (a schema file or
                registry schema that cannot be parsed, a registry that cannot be reached): not the
                message's fault.
        """
        if not value:
            raise DecodeError("empty message value")
        try:
            if self.fmt == "confluent":
                if len(value) < 5:
                    raise DecodeError(f"message of {len(value)} bytes is shorter than the 5-byte Confluent header")
                magic, schema_id = HEADER.unpack_from(value)
                if magic != MAGIC_BYTE:
                    raise DecodeError(f"magic byte is {value[0]}, expected 0 (Confluent wire format)")
                self.last_schema_id = schema_id
                record = self._for_id(schema_id)(memoryview(value)[5:])
            elif self.fmt == "schemaless":
                assert self._schemaless is not None
                record = self._schemaless(value)
            else:
                # Never more than two records: a block may claim 2**40 of them in a few bytes.
                records = iter(fastavro.reader(io.BytesIO(bytes(value)), reader_schema=self.reader_schema))
                record = next(records, _NOTHING)
                if record is _NOTHING:
                    raise DecodeError("container holds no record; one alert per message expected")
                if next(records, _NOTHING) is not _NOTHING:
                    raise DecodeError("container holds more than one record; one alert per message expected")
                record = Alert(record) if isinstance(record, dict) else record
        except (DecodeError, SchemaSourceError):
            raise
        except Exception as exc:  # noqa: BLE001 - the codecs raise many kinds on corrupt input
            raise DecodeError(f"corrupt Avro data: {type(exc).__name__}: {exc}") from None
        if not isinstance(record, dict):
            raise DecodeError(f"decoded value is a {type(record).__name__}, not a record")
        return record if isinstance(record, Alert) else Alert(record)


def _whole(
    decode: Callable[[Body], Any], writer: dict[str, Any], reader: dict[str, Any] | None
) -> Callable[[Body], Any]:
    """``decode``, its records wrapped as :class:`Alert` whose history columns follow the schema
    the records have (the reader's when there is one), read from the decoded records."""
    cols: SchemaColumns | None = None
    try:
        found = schema_columns(reader if reader is not None else writer)
        cols = SchemaColumns(found.program, found.arrays)  # no bytes kept: columns from the records
    except Exception:  # noqa: BLE001 - a schema the skipper cannot compile: columns from the values
        pass

    def whole(body: Body) -> Any:
        record = decode(body)
        return Alert(record, cols) if isinstance(record, dict) else record

    return whole


def encode_confluent(record: dict[str, Any], parsed_schema: Any, schema_id: int) -> bytes:
    """Encode ``record`` in the Confluent wire format with ``schema_id``.

    Args:
        parsed_schema: the output of ``fastavro.parse_schema``.
    """
    bio = io.BytesIO()
    bio.write(HEADER.pack(MAGIC_BYTE, schema_id))
    fastavro.schemaless_writer(bio, parsed_schema, record)
    return bio.getvalue()


def read_container(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The writer schema and the records of an Avro object container file."""
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        if not isinstance(schema, dict):
            raise ValueError(f"{path}: the writer schema is not a record")
        return schema, [r for r in reader if isinstance(r, dict)]
