"""Alerts from files, in the forms Kafka holds them: what ``alertfilter check`` and ``report`` read.

An input is a file or a directory (its regular files, not hidden ones, in natural name order:
``2`` before ``10``). A file is one of:

- an Avro object container file (starts with ``Obj\\x01``; its writer schema in its header), any
  number of alerts: how alerts are shared and how ZTF publishes one alert per message;
- one Confluent-wire-format message (byte 0 is 0, bytes 1-4 a big-endian schema id, then the Avro
  body): a Kafka record's value as Rubin publishes it, as a broker's test data or a dumped record
  holds it. Its writer schema comes from a :class:`~alertfilter.schemas.SchemaSource`
  (``--schema-dir`` or ``--schema-registry``, as the runner's).

Anything else is an :class:`AlertInputError` that says what the file is (gzip, FITS, Parquet, JSON,
an Avro schema, text, or which bytes it starts with).
"""

from __future__ import annotations

import io
import json
import re
import stat
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from .schemas import SchemaNotFound, SchemaSource, SchemaSourceError
from .surveys import schema_full_name

CONTAINER_MAGIC = b"Obj\x01"
#: Bytes read to tell what a file is.
SNIFF_BYTES = 512
#: The largest file read as one Confluent-wire-format message, bytes. A Kafka record's value is
#: bounded by the broker's ``message.max.bytes`` (1 MiB by default; Rubin's long-history alerts are
#: a few MB); a larger file starting with a zero byte is something else (a zeroed or sparse file),
#: and reading it whole would only exhaust memory.
MAX_WIRE_BYTES = 64 * 1024 * 1024


class AlertInputError(ValueError):
    """An input cannot be read as alerts; the message names the file and says what it is.

    Attributes:
        path: the file (or directory).
        index: alerts of that file read before the problem (0 when it is not an alert file at all).
    """

    def __init__(self, message: str, path: str, index: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.index = index


@dataclass(frozen=True)
class FileAlert:
    """One alert of a file.

    Attributes:
        path: the file; index: the alert's position in it (0-based).
        schema: the writer schema (JSON-compatible); schema_text: the same as JSON text.
        record: the decoded alert.
        body: the schemaless Avro body as the file held it (Confluent-wire files), else None.
        schema_id: the Confluent schema id (wire files), else None.
    """

    path: str
    index: int
    schema: Any
    schema_text: str
    record: Any
    body: bytes | None = None
    schema_id: int | None = None


def _natural(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, words in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return words
    return "not a regular file"


_PLURAL = {"directory": "directories", "broken link": "broken links", "other entry": "other entries"}


def _count(n: int, what: str) -> str:
    return f"{n} {what if n == 1 else _PLURAL[what]}"


def _directory_files(p: Path) -> list[Path]:
    """The regular, non-hidden files of directory ``p`` (natural order); what it holds besides is
    said when there is none (subdirectories are not read: a link back to the directory is no loop)."""
    files: list[Path] = []
    skipped: dict[str, int] = {}
    for f in p.iterdir():
        if f.name.startswith("."):
            continue
        try:
            mode = f.stat().st_mode  # follows links: a link to a file is that file
        except OSError:  # a broken link, a link loop, a file gone since the listing
            skipped["broken link"] = skipped.get("broken link", 0) + 1
            continue
        if stat.S_ISREG(mode):
            files.append(f)
        else:
            what = "directory" if stat.S_ISDIR(mode) else "other entry"  # a pipe, device or socket
            skipped[what] = skipped.get(what, 0) + 1
    if not files:
        holds = ", ".join(_count(n, what) for what, n in skipped.items())
        extra = f" (it holds {holds}; directories are not read recursively)" if holds else ""
        raise AlertInputError(f"directory {p} holds no file{extra}", str(p))
    return sorted(files, key=_natural)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """The files ``paths`` name, directories replaced by their regular, non-hidden files (natural order).

    Raises:
        FileNotFoundError: a path does not exist (every such path is named).
        AlertInputError: a directory holds no file, or a path is a named pipe, device or socket.
    """
    out: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        p = Path(raw)
        try:
            mode = p.stat().st_mode
        except OSError:  # absent, a broken link or a link loop
            missing.append(str(p))
            continue
        if stat.S_ISDIR(mode):
            out.extend(_directory_files(p))
        elif stat.S_ISREG(mode):
            out.append(p)
        else:
            raise AlertInputError(f"{p} is {_kind(mode)}, not a file of alerts: give a file or a directory", str(p))
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
    return out


def describe(head: bytes, size: int) -> str:
    """What a file that starts with ``head`` and holds ``size`` bytes is, in words (for errors)."""
    if size == 0:
        return "an empty file"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data: decompress it first (gunzip)"
    if head.startswith(b"SIMPLE  ="):
        return "a FITS file (an image, not an alert)"
    if head.startswith(b"PAR1"):
        return "a Parquet file (alerts as a table, as some brokers export them): convert it to Avro first"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive: extract it first"
    if head[:1] == b"\x00" and size < 5:
        return f"too short for a Confluent-wire-format message ({size} bytes; the header alone is 5)"
    if not head.strip(b"\x00"):
        return f"{size:,} bytes whose first {len(head)} are all zero (a zeroed or sparse file, not alerts)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of what was read is still text
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 and size > len(head) else ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            if '"fields"' in stripped or ('"type"' in stripped and '"name"' in stripped):
                return "JSON text that looks like an Avro schema (.avsc), not alerts: put it in a --schema-dir"
            return "JSON text (such as `alertfilter consume --mode json` prints), not Avro alerts"
        first = stripped.splitlines()[0][:60] if stripped else ""
        return f"a text file (it starts {first!r}), not Avro alerts"
    return (
        "neither an Avro container file (which starts with 'Obj\\x01') nor a Confluent-wire-format "
        "message (a zero byte, a 4-byte schema id, the Avro body); its first bytes are " + head[:8].hex(" ")
    )


#: The largest single read an Avro container file may ask for (a block, a bytes field), bytes:
#: writers flush blocks every few tens of KB, and an alert is at most a few MB; a header or block that
#: claims more (a crafted or corrupt file, or zeros after a real header) would only exhaust memory.
MAX_CONTAINER_READ = 256 * 1024 * 1024


class _BoundedReads:
    """A binary file whose reads of more than :data:`MAX_CONTAINER_READ` bytes fail (ValueError)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_CONTAINER_READ:
            what = "the rest of the file" if n is None or n < 0 else f"{n:,} bytes"
            raise ValueError(f"it asks to read {what} at once, more than {MAX_CONTAINER_READ:,}: not an alert file")
        data: bytes = self._fh.read(n)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _container(path: Path, fh: Any) -> Iterator[FileAlert]:
    fh = _BoundedReads(fh)
    try:
        reader = fastavro.reader(fh)
        text = reader.metadata.get("avro.schema")
        if text is None:
            raise ValueError("no writer schema (avro.schema) in it")
        schema = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - fastavro raises several kinds on a bad header
        raise AlertInputError(
            f"file {path} starts like an Avro container file but its header cannot be read: {type(exc).__name__}: {exc}",
            str(path),
        ) from None
    index = 0
    records = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - EOFError, ValueError, zlib.error, MemoryError...
            raise AlertInputError(
                f"file {path} is truncated or corrupt after {index} alerts: {type(exc).__name__}: {exc}",
                str(path),
                index,
            ) from None
        yield FileAlert(str(path), index, schema, text, record)
        index += 1


class WireDecoder:
    """Decodes Confluent-wire-format values with the writer schemas of ``schemas`` (parsed once per id)."""

    def __init__(self, schemas: SchemaSource | None, how: str = "--schema-dir or --schema-registry") -> None:
        self.schemas = schemas
        self.how = how
        self._parsed: dict[int, tuple[Any, str, Any]] = {}

    def schema(self, schema_id: int, where: str) -> tuple[Any, str, Any]:
        """``(schema, schema_text, parsed)`` of ``schema_id``.

        Raises:
            AlertInputError: no schema source, the id unknown, or the source unusable (``where`` names the input).
        """
        hit = self._parsed.get(schema_id)
        if hit is not None:
            return hit
        if self.schemas is None:
            raise AlertInputError(
                f"{where} holds a Confluent-wire-format message with schema id {schema_id}: give {self.how} to read it",
                where,
            )
        try:
            schema = self.schemas.get(schema_id)
        except (SchemaNotFound, SchemaSourceError) as exc:
            raise AlertInputError(
                f"{where} holds a Confluent-wire-format message with schema id {schema_id}, "
                f"whose schema cannot be had: {exc}",
                where,
            ) from None
        hit = self._parsed[schema_id] = (schema, json.dumps(schema), fastavro.parse_schema(schema))
        return hit

    def decode(self, value: bytes, where: str, label: str | None = None) -> FileAlert:
        """The alert of one wire-format ``value`` from ``where`` (index 0); ``label`` names it in
        errors (default: ``where``).

        Raises:
            AlertInputError: no usable schema, or a body that the schema does not read exactly.
        """
        schema_id = int.from_bytes(value[1:5], "big")
        label = label or where
        schema, text, parsed = self.schema(schema_id, label)
        body = value[5:]
        bio = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(bio, parsed, None)
        except Exception as exc:  # noqa: BLE001 - EOFError, ValueError, MemoryError on a foreign body
            raise AlertInputError(
                f"{label} starts like a Confluent-wire-format message (schema id {schema_id}) but its body "
                f"does not decode with that schema: {type(exc).__name__}: {exc}",
                label,
            ) from None
        left = len(body) - bio.tell()
        if left:
            raise AlertInputError(
                f"{label} holds a Confluent-wire-format message (schema id {schema_id}) followed by {left} more "
                "bytes: one message per file (a directory holds several)",
                label,
            )
        return FileAlert(where, 0, schema, text, record, body, schema_id)


def read_alerts(paths: Iterable[str | Path], schemas: SchemaSource | None = None) -> Generator[FileAlert, None, None]:
    """Every alert of ``paths`` (files or directories, see :func:`expand`), in order.

    Raises:
        FileNotFoundError: a path does not exist (raised before any alert).
        AlertInputError: a file is not an alert file (said what it is), or is truncated or corrupt
            (``index`` alerts of it were yielded), or holds a wire message whose schema cannot be had.
        OSError: a file cannot be read.
    """
    wire = WireDecoder(schemas)
    for path in expand(paths):
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            size = path.stat().st_size
            if head.startswith(CONTAINER_MAGIC):
                fh.seek(0)
                yield from _container(path, fh)
            elif is_wire_header(head, size):
                label = f"file {path}"
                if size > MAX_WIRE_BYTES:
                    raise AlertInputError(
                        f"{label} starts like a Confluent-wire-format message (schema id "
                        f"{int.from_bytes(head[1:5], 'big')}) but holds {size:,} bytes, more than any Kafka record's "
                        f"value ({MAX_WIRE_BYTES:,} at most): it is not one message; its first bytes are "
                        + head[:8].hex(" "),
                        str(path),
                    )
                wire.schema(int.from_bytes(head[1:5], "big"), label)  # said before the body is read
                yield wire.decode(head + fh.read(), str(path), label)
            else:
                raise AlertInputError(
                    f"file {path} is not an Avro container file nor a Confluent-wire-format message: "
                    f"it is {describe(head, size)}",
                    str(path),
                )


def is_wire_header(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes that starts with ``head`` may be one Confluent-wire-format
    message: byte 0 is 0, a body follows the 5-byte header, and the schema id is not 0 (no schema
    registry gives id 0, and an all-zero file would otherwise pass)."""
    return head[:1] == b"\x00" and size >= 5 and int.from_bytes(head[1:5], "big") != 0


def first_schema_name(paths: Iterable[str | Path], schemas: SchemaSource | None = None) -> str | None:
    """The full name of the first alert's writer schema (None when it cannot be read: the reading
    proper reports why)."""
    alerts = read_alerts(paths, schemas)
    try:
        first = next(alerts, None)
    except (AlertInputError, OSError):
        return None
    finally:
        alerts.close()
    return schema_full_name(first.schema) if first is not None else None
