"""How message values are decoded, as settings: :class:`DecodingSpec` builds the :class:`Decoder`
(the CLI checks it in the runner; the filter process builds its own), and :func:`decode_fields`
decides which top-level fields a filter needs (``--fields``), the same way for ``run`` and ``check``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import LoadedFilter
from .codecs import Decoder
from .fields import get_field, parse_path
from .projection import infer_fields
from .schemas import DirectorySchemaSource, RegistrySchemaSource, SchemaSource, load_schema_file


@dataclass(frozen=True)
class DecodingSpec:
    """The decoding options (``--format``, ``--schema-dir``, ``--schema-registry``, ``--schema``,
    ``--reader-schema``, ``--decoder``) as plain, JSON-compatible values.

    Attributes:
        fmt: ``confluent``, ``schemaless`` or ``container`` (see :mod:`alertfilter.codecs`).
        schema_dir: a directory of ``.avsc`` files, or None.
        schema_registry: a schema registry URL, or None (wins over ``schema_dir``).
        schema: the writer schema file (``schemaless``), or None.
        reader_schema: a reader schema file, or None.
        backend: ``cavro`` or ``fastavro``.
    """

    fmt: str = "confluent"
    schema_dir: str | None = None
    schema_registry: str | None = None
    schema: str | None = None
    reader_schema: str | None = None
    backend: str = "cavro"

    def build(self, fields: frozenset[str] | None = None) -> Decoder:
        """The decoder these options describe, decoding only ``fields`` (None: all).

        Raises:
            ValueError: a schema file missing or unparsable, a format without what it needs.
            FileNotFoundError: the schema directory does not exist.
            ImportError: the registry extra is not installed.
        """
        schemas: SchemaSource | None = None
        if self.schema_registry:
            schemas = RegistrySchemaSource(self.schema_registry)
        elif self.schema_dir:
            schemas = DirectorySchemaSource(self.schema_dir)
        writer = schema_file("--schema", self.schema) if self.schema else None
        reader = schema_file("--reader-schema", self.reader_schema) if self.reader_schema else None
        try:
            return Decoder(self.fmt, schemas, writer, reader, self.backend, fields)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - the schema cannot be compiled by the decoder
            raise ValueError(f"the writer schema cannot be used: {type(exc).__name__}: {exc}") from None


def visit_reader(spec: DecodingSpec, visit_field: str) -> Callable[[bytes | None], Any]:
    """A function giving the visit id of a message value (decoding only the visit's top-level
    field), or None when it cannot be read: the runner's own reading, so that the per-visit cap
    never rests on what the filter process says.

    Raises:
        ValueError, OSError, ImportError: as :meth:`DecodingSpec.build`.
    """
    path = parse_path(visit_field)
    decoder = spec.build(frozenset({path[0]}))

    def visit(value: bytes | None) -> Any:
        try:
            return get_field(decoder.decode(value), path)
        except Exception:  # noqa: BLE001 - any failure: no reading of the runner's own (the caller falls back)
            return None

    return visit


def schema_file(option: str, path: str) -> dict[str, Any]:
    """The Avro schema in the file ``path`` given as ``option``.

    Raises:
        ValueError: the file is missing, unreadable or not a usable Avro schema (naming ``option``).
    """
    if not Path(path).is_file():
        raise ValueError(f"cannot read {option} {path}: no such file")
    try:
        return load_schema_file(path)
    except OSError as exc:
        raise ValueError(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - JSON and fastavro parse errors alike
        raise ValueError(f"{option} {path} is not a usable Avro schema: {type(exc).__name__}: {exc}") from None


def decode_fields(
    choice: str, flt: LoadedFilter, source: str, visit_field: str, id_field: str
) -> frozenset[str] | None:
    """Top-level fields to decode (``--fields``): None for all.

    Args:
        choice: ``auto``: the filter's own ``fields`` declaration (a class attribute, or an attribute
            of the function), else the fields inferred from ``source``
            (:func:`alertfilter.projection.infer_fields`), else all; ``all``; or a comma-separated list.
        flt: the loaded filter; source: its text; visit_field, id_field: dotted paths, whose
            top-level names are always included.
    """
    choice = choice or "auto"
    if choice == "all":
        return None
    if choice != "auto":
        names = {f.strip() for f in choice.split(",") if f.strip()}
    else:
        owner = getattr(flt.func, "__self__", flt.func)
        declared = getattr(owner, "fields", None)
        if isinstance(declared, (list, tuple, set, frozenset)) and all(isinstance(x, str) for x in declared):
            names = set(declared)
        else:
            inferred = infer_fields(source.removeprefix("\ufeff"), flt.name)
            if inferred is None:
                return None
            names = inferred
    return frozenset(names | {visit_field.split(".")[0], id_field.split(".")[0]})
