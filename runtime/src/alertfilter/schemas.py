"""Where writer schemas come from: a schema registry or a local directory of ``.avsc`` files.

The writer schema of a message is always the one its schema id names (or its container header);
the runtime never assumes the newest schema wrote the data. Rubin's schema ids are
``major * 100 + minor`` (``lsst.v10_0.alert`` is 1000), per Rubin's alert distribution docs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import fastavro.schema

_VERSION_RE = re.compile(r"v(\d+)_(\d+)")


#: How long a schema that failed to load is not tried again, s: messages of that id fail fast
#: meanwhile (the runner retries a batch after a back-off of at least this).
FAILURE_TTL_S = 1.0


class SchemaNotFound(LookupError):
    """No schema is known for a schema id: a problem of the message (it goes to the dead-letter topic)."""


class SchemaSourceError(RuntimeError):
    """The schema source cannot be used now: a schema that cannot be parsed, or a registry that
    cannot be reached. Not the message's fault: the runner neither dead-letters nor commits it,
    and retries."""


class _Failures:
    """Remembers, per schema id, a recent failure to load it, for :data:`FAILURE_TTL_S`."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_id: dict[int, tuple[float, SchemaSourceError]] = {}

    def check(self, schema_id: int) -> None:
        hit = self._by_id.get(schema_id)
        if hit is not None:
            if time.monotonic() - hit[0] < self.ttl_s:
                raise hit[1]
            del self._by_id[schema_id]

    def add(self, schema_id: int, exc: SchemaSourceError) -> SchemaSourceError:
        self._by_id[schema_id] = (time.monotonic(), exc)
        return exc


class SchemaSource(Protocol):
    """Resolves a schema id to a writer schema (an Avro schema as a JSON-compatible dict)."""

    def get(self, schema_id: int) -> dict[str, Any]: ...


def rubin_schema_id(full_name: str) -> int | None:
    """``lsst.v10_0.alert`` → 1000 (major*100+minor); None when the name carries no version."""
    m = _VERSION_RE.search(full_name)
    return int(m.group(1)) * 100 + int(m.group(2)) if m else None


def _full_name(schema: dict[str, Any]) -> str:
    name = schema.get("name", "")
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


class DirectorySchemaSource:
    """Schemas from a directory tree of ``.avsc`` files.

    A file named ``<id>.avsc`` (digits) holds the schema with that id. Otherwise every
    ``*.alert.avsc`` file whose full name carries a Rubin version (``lsst.v10_0.alert``) is indexed
    under ``major*100+minor``; named types it references are loaded from sibling files
    (``lsst.v10_0.diaSource.avsc``), as in Rubin's published schema layout.

    A file that cannot be parsed is a :class:`SchemaSourceError` (tried again after
    ``failure_ttl_s``: the file may be fixed meanwhile).

    Raises:
        FileNotFoundError: when ``path`` is not a directory.
    """

    def __init__(self, path: str | Path, failure_ttl_s: float = FAILURE_TTL_S) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"schema directory {self.path} does not exist")
        self._files: dict[int, Path] = {}
        self._scanned_at = 0.0
        self._scan()
        self._cache: dict[int, dict[str, Any]] = {}
        self._failures = _Failures(failure_ttl_s)
        self._lock = threading.Lock()

    #: At most one re-read of the directory per this many seconds when an unknown id arrives.
    RESCAN_INTERVAL_S = 2.0

    def _scan(self) -> None:
        """(Re)index the directory: a schema added after start (a new alert schema version) is found."""
        import time

        self._scanned_at = time.monotonic()
        for f in sorted(self.path.rglob("*.avsc")):
            stem = f.name[: -len(".avsc")]
            if stem.isdigit():
                self._files[int(stem)] = f
            elif stem.endswith(".alert"):
                sid = rubin_schema_id(stem)
                if sid is not None:
                    self._files.setdefault(sid, f)

    def ids(self) -> list[int]:
        """The schema ids this directory holds."""
        return sorted(self._files)

    def get(self, schema_id: int) -> dict[str, Any]:
        """The schema with ``schema_id``, loaded once and cached.

        Raises:
            SchemaNotFound: no file for that id.
            SchemaSourceError: the file cannot be read or parsed.
        """
        with self._lock:
            if schema_id in self._cache:
                return self._cache[schema_id]
            f = self._files.get(schema_id)
            if f is None:
                import time

                if time.monotonic() - self._scanned_at >= self.RESCAN_INTERVAL_S:
                    self._scan()
                    f = self._files.get(schema_id)
            if f is None:
                raise SchemaNotFound(
                    f"schema id {schema_id} not found in {self.path} (has: {', '.join(map(str, self.ids())) or 'none'})"
                )
            self._failures.check(schema_id)
            try:
                schema = load_schema_file(f)
            except Exception as exc:  # noqa: BLE001 - JSON, fastavro and OS errors alike
                raise self._failures.add(
                    schema_id,
                    SchemaSourceError(
                        f"schema file {f} (schema id {schema_id}) cannot be used: {type(exc).__name__}: {exc}"
                    ),
                ) from None
            self._cache[schema_id] = schema
            return schema


class RegistrySchemaSource:
    """Schemas from a Confluent-compatible schema registry, through confluent-kafka's client.

    An id the registry answers it does not know (HTTP 404) is :class:`SchemaNotFound`; a registry
    that cannot be reached, answers with another error, or returns a schema that is not JSON is a
    :class:`SchemaSourceError` (asked again after ``failure_ttl_s``).

    Raises:
        ImportError: when confluent-kafka's schema-registry extra (``httpx``, ``authlib``...) is
            missing; the message says how to install it.
    """

    def __init__(self, url: str, failure_ttl_s: float = FAILURE_TTL_S) -> None:
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:
            raise ImportError(
                f"--schema-registry needs confluent-kafka's schema-registry extra: pip install "
                f"'alertfilter[registry]' ({exc})"
            ) from None

        self.url = url
        self._client = SchemaRegistryClient({"url": url})
        self._cache: dict[int, dict[str, Any]] = {}
        self._failures = _Failures(failure_ttl_s)
        self._lock = threading.Lock()

    def get(self, schema_id: int) -> dict[str, Any]:
        """The schema registered under ``schema_id``, fetched once and cached.

        Raises:
            SchemaNotFound: the registry does not know the id.
            SchemaSourceError: the registry cannot be reached or answers with another error.
        """
        with self._lock:
            if schema_id in self._cache:
                return self._cache[schema_id]
            self._failures.check(schema_id)
            try:
                text = self._client.get_schema(schema_id).schema_str
            except Exception as exc:  # noqa: BLE001 - the client raises several kinds
                if getattr(exc, "http_status_code", None) == 404:
                    raise SchemaNotFound(f"schema id {schema_id} is not in registry {self.url}: {exc}") from None
                raise self._failures.add(
                    schema_id,
                    SchemaSourceError(
                        f"schema registry {self.url} cannot give schema id {schema_id}: {type(exc).__name__}: {exc}"
                    ),
                ) from None
            try:
                schema: dict[str, Any] = json.loads(text if text is not None else "null")
                if not isinstance(schema, (dict, str, list)):
                    raise ValueError(f"a schema is an object, an array or a name, not {text!r}")
            except (TypeError, ValueError) as exc:
                raise self._failures.add(
                    schema_id, SchemaSourceError(f"schema id {schema_id} from registry {self.url} is not JSON: {exc}")
                ) from None
            self._cache[schema_id] = schema
            return schema


class StaticSchemaSource:
    """A fixed mapping of schema id → schema (tests, and schemas written by ``alertfilter produce``)."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self._schemas = dict(schemas)

    def get(self, schema_id: int) -> dict[str, Any]:
        """Raises SchemaNotFound for an unknown id."""
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise SchemaNotFound(f"schema id {schema_id} is not known") from None


def define_once(schema: Any, namespace: str | None, seen: set[str]) -> Any:
    """Copy of an expanded schema in which each named type is defined once, then referenced by name."""
    if isinstance(schema, list):
        return [define_once(s, namespace, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    t = schema.get("type")
    if t in ("record", "error", "enum", "fixed"):
        name = schema["name"]
        ns = schema.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        if full in seen:
            return full
        seen.add(full)
        out = {k: v for k, v in schema.items() if k != "fields"}
        out.pop("namespace", None)
        out["name"] = full
        if "fields" in schema:
            inner_ns = full.rpartition(".")[0] or None
            out["fields"] = [{**fld, "type": define_once(fld["type"], inner_ns, seen)} for fld in schema["fields"]]
        return out
    if t == "array":
        return {**schema, "items": define_once(schema["items"], namespace, seen)}
    if t == "map":
        return {**schema, "values": define_once(schema["values"], namespace, seen)}
    if isinstance(t, (dict, list)):
        return {**schema, "type": define_once(t, namespace, seen)}
    return schema


def load_schema_file(path: str | Path) -> dict[str, Any]:
    """Load one ``.avsc`` file as a self-contained schema dict (JSON-compatible).

    Named types it references are loaded from sibling files named ``<full name>.avsc``; each is
    defined once in the result and referenced by full name after that.
    """
    schema = fastavro.schema.load_schema(str(path), _write_hint=False)
    expanded: dict[str, Any] = define_once(fastavro.schema.expand_schema(schema), None, set())
    return expanded
