"""Decoding the message formats, on the real alerts, and the errors of bad messages."""

import json

import fastavro
import pytest

from alertfilter.codecs import BACKENDS, DecodeError, Decoder, encode_confluent
from alertfilter.schemas import SchemaNotFound, StaticSchemaSource, rubin_schema_id
from tests.data.compare import same as _same


def test_unknown_format_and_backend_are_refused():
    with pytest.raises(ValueError, match="unknown format"):
        Decoder("json")
    with pytest.raises(ValueError, match="unknown decoder backend"):
        Decoder("container", backend="avro-rs")
    with pytest.raises(ValueError, match="schema source"):
        Decoder("confluent")


def test_rubin_schema_ids():
    assert rubin_schema_id("lsst.v10_0.alert") == 1000
    assert rubin_schema_id("lsst.v11_1.alert") == 1101
    assert rubin_schema_id("ztf.alert") is None


def test_project_schemas_resolve_named_types_from_sibling_files():
    from alertfilter.simulate import alert_schema, simulate

    schema = alert_schema()
    parsed = fastavro.parse_schema(schema)
    alerts = list(simulate([5, 6], alerts_per_visit=3, history=4, cutout_bytes=100))
    assert len(alerts) == 6 and all(len(a["prv_diaSources"]) == 4 for a in alerts)
    assert [a["diaSource"]["ccdVisitId"] // 1000 for a in alerts] == [5, 5, 5, 6, 6, 6]
    for a in alerts:
        assert fastavro.validation.validate(a, parsed)
        value = encode_confluent(a, parsed, 1)
        outs = [Decoder("confluent", StaticSchemaSource({1: schema}), backend=b).decode(value) for b in BACKENDS]
        assert _same(outs[0], outs[1])  # float fields come back as float32 in both
        assert outs[0]["diaSource"]["diaSourceId"] == a["diaSource"]["diaSourceId"]
        assert outs[0]["cutoutDifference"]["stampData"] == a["cutoutDifference"]["stampData"]


# --- container messages: never more than two records are read ---------------------------------------
def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _container(schema, count: int, body: bytes = b"") -> bytes:
    """An Avro container whose one block claims ``count`` records in ``body`` (as /work/breaker/f/bomb.py)."""
    sync = bytes(range(16))
    meta = {"avro.schema": json.dumps(schema).encode(), "avro.codec": b"null"}
    header = (
        b"Obj\x01"
        + _zigzag(len(meta))
        + b"".join(_zigzag(len(k)) + k.encode() + _zigzag(len(v)) + v for k, v in meta.items())
        + _zigzag(0)
        + sync
    )
    return header + _zigzag(count) + _zigzag(len(body)) + body + sync


@pytest.mark.parametrize("schema", ["null", {"type": "record", "name": "E", "fields": []}])
def test_container_claiming_2_to_the_40_records_is_a_quick_decode_error(schema):
    import time

    bomb = _container(schema, 2**40)
    assert len(bomb) < 200
    t0 = time.monotonic()
    with pytest.raises(DecodeError, match="more than one record"):
        Decoder("container").decode(bomb)
    assert time.monotonic() - t0 < 1


def test_container_without_records_is_a_decode_error():
    with pytest.raises(DecodeError, match="holds no record"):
        Decoder("container").decode(_container({"type": "record", "name": "E", "fields": []}, 0))


# --- a schema source that cannot be used is not the message's fault -----------------------------------
class _Registry:
    def __init__(self, exc):
        self.exc = exc

    def get_schema(self, schema_id):
        raise self.exc


def _registry(exc):
    import threading

    from alertfilter.schemas import RegistrySchemaSource, _Failures

    src = RegistrySchemaSource.__new__(RegistrySchemaSource)
    src.url, src._cache, src._lock = "http://registry:8081", {}, threading.Lock()
    src._client = _Registry(exc)  # type: ignore[assignment]  # a registry client that fails as told
    src._failures = _Failures(60)
    return src


def test_registry_that_cannot_be_reached_is_a_schema_source_error_and_an_unknown_id_is_not():
    from alertfilter.schemas import SchemaSourceError

    with pytest.raises(SchemaSourceError, match="registry http://registry:8081 cannot give schema id 1000"):
        _registry(ConnectionError("connection refused")).get(1000)
    missing = Exception("Schema 1000 not found")
    setattr(missing, "http_status_code", 404)  # noqa: B010 - as the registry client's errors carry it
    with pytest.raises(SchemaNotFound):
        _registry(missing).get(1000)
