"""Decoding the message formats, on the real alerts, and the errors of bad messages."""

import io
import json
from typing import Any

import fastavro
import pytest

from alertfilter.codecs import BACKENDS, DecodeError, Decoder, encode_confluent, read_container
from alertfilter.schemas import DirectorySchemaSource, SchemaNotFound, StaticSchemaSource
from tests.data.compare import same as _same


@pytest.fixture(scope="module")
def real(alerts_dir):
    schema, records = read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))
    return schema, records


@pytest.mark.parametrize("backend", BACKENDS)
def test_confluent_wire_format_round_trip_on_real_alerts(real, backend):
    schema, records = real
    parsed = fastavro.parse_schema(schema)
    dec = Decoder("confluent", StaticSchemaSource({1000: schema}), backend=backend)
    for rec in records:
        value = encode_confluent(rec, parsed, 1000)
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == 1000
        assert _same(dec.decode(value), rec)
    assert dec.last_schema_id == 1000


@pytest.mark.parametrize("name", ["rubin-v10_0-history-4.avro", "ZTF19acihgng.avro", "ZTF19acxxwrs.avro"])
def test_backends_agree_on_every_shared_file(alerts_dir, name):
    schema, records = read_container(str(alerts_dir / name))
    parsed = fastavro.parse_schema(schema)
    decoders = [Decoder("confluent", StaticSchemaSource({7: schema}), backend=b) for b in BACKENDS]
    for rec in records:
        value = encode_confluent(rec, parsed, 7)
        outs = [d.decode(value) for d in decoders]
        assert all(_same(o, rec) for o in outs)


def test_schemaless_format(real):
    schema, records = real
    bio = io.BytesIO()
    fastavro.schemaless_writer(bio, fastavro.parse_schema(schema), records[0])
    assert _same(Decoder("schemaless", schema=schema).decode(bio.getvalue()), records[0])


def test_container_format_takes_the_schema_from_the_header(alerts_dir):
    value = (alerts_dir / "ZTF19acihgng.avro").read_bytes()
    alert = Decoder("container").decode(value)
    assert alert["objectId"] == "ZTF19acihgng"


def test_container_with_several_records_is_an_error(alerts_dir):
    value = (alerts_dir / "rubin-v10_0-history-4.avro").read_bytes()
    with pytest.raises(DecodeError, match="more than one record"):
        Decoder("container").decode(value)


def test_reader_schema_keeps_only_its_fields(real):
    schema, records = real
    reader = {
        "type": "record",
        "name": "alert",
        "namespace": "lsst.v10_0",
        "fields": [{"name": "diaSourceId", "type": "long"}],
    }
    value = encode_confluent(records[0], fastavro.parse_schema(schema), 1000)
    for backend in BACKENDS:
        out = Decoder("confluent", StaticSchemaSource({1000: schema}), reader_schema=reader, backend=backend).decode(
            value
        )
        assert out == {"diaSourceId": records[0]["diaSourceId"]}


@pytest.fixture
def dec(real):
    return Decoder("confluent", StaticSchemaSource({1000: real[0]}))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\x00\x00", "shorter than the 5-byte"),
        (b"\x01\x00\x00\x03\xe8abc", "magic byte is 1"),
        (b"\x00\x00\x00\x00\x07abc", "schema id 7"),
        (b'{"json": true}', "magic byte is 123"),
    ],
)
def test_bad_messages_say_why(dec, value, words):
    with pytest.raises(DecodeError, match=words):
        dec.decode(value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_and_padded_bodies_are_errors(real, backend):
    schema, records = real
    value = encode_confluent(records[0], fastavro.parse_schema(schema), 1000)
    d = Decoder("confluent", StaticSchemaSource({1000: schema}), backend=backend)
    with pytest.raises(DecodeError):
        d.decode(value[: len(value) // 2])
    if backend == "fastavro":
        with pytest.raises(DecodeError, match="left over"):
            d.decode(value + b"\x00\x00")


def test_schema_directory_by_id_and_by_rubin_name(tmp_path, real):
    schema, _ = real
    (tmp_path / "1000.avsc").write_text(json.dumps(schema))
    sub = tmp_path / "lsst" / "v11_1"
    sub.mkdir(parents=True)
    (sub / "lsst.v11_1.alert.avsc").write_text(json.dumps({**schema, "name": "lsst.v11_1.alert"}))
    src = DirectorySchemaSource(tmp_path)
    assert src.ids() == [1000, 1101]
    assert src.get(1101)["name"] == "lsst.v11_1.alert"
    with pytest.raises(SchemaNotFound, match="schema id 5 not found"):
        src.get(5)


def test_schema_directory_finds_a_schema_added_after_start(tmp_path, real, monkeypatch):
    schema, _ = real
    src = DirectorySchemaSource(tmp_path)
    with pytest.raises(SchemaNotFound):
        src.get(1000)
    (tmp_path / "1000.avsc").write_text(json.dumps(schema))
    monkeypatch.setattr(DirectorySchemaSource, "RESCAN_INTERVAL_S", 0.0)
    assert src.get(1000)["name"] == "lsst.v10_0.alert"


def test_malformed_schema_file_is_a_schema_source_error_not_a_decode_error(tmp_path, real, monkeypatch):
    import alertfilter.schemas as schemas_mod
    from alertfilter.schemas import SchemaSourceError

    schema, records = real
    (tmp_path / "1000.avsc").write_text('{"type": "record", "name": "x", "fields": [')
    value = encode_confluent(records[0], fastavro.parse_schema(schema), 1000)
    calls = []
    real_load = schemas_mod.load_schema_file

    def load(f: Any) -> Any:
        calls.append(f)
        return real_load(f)

    monkeypatch.setattr(schemas_mod, "load_schema_file", load)
    dec = Decoder("confluent", DirectorySchemaSource(tmp_path, failure_ttl_s=60))
    for _ in range(5):
        with pytest.raises(SchemaSourceError, match=r"1000\.avsc \(schema id 1000\) cannot be used"):
            dec.decode(value)
    assert len(calls) == 1  # the failure is remembered: the file is not parsed again per message
    with pytest.raises(DecodeError, match="schema id 7 not found"):  # an unknown id is still the message's problem
        dec.decode(b"\x00\x00\x00\x00\x07" + value[5:])


def test_schema_file_fixed_after_a_failure_is_used(tmp_path, real):
    from alertfilter.schemas import SchemaSourceError

    schema, _records = real
    (tmp_path / "1000.avsc").write_text("{not json")
    src = DirectorySchemaSource(tmp_path, failure_ttl_s=0)
    with pytest.raises(SchemaSourceError):
        src.get(1000)
    (tmp_path / "1000.avsc").write_text(json.dumps(schema))
    assert src.get(1000)["name"] == "lsst.v10_0.alert"


def test_schema_the_decoder_cannot_compile_is_a_schema_source_error(real):
    from alertfilter.schemas import SchemaSourceError

    schema, records = real
    value = encode_confluent(records[0], fastavro.parse_schema(schema), 5)
    bad = {"type": "record", "name": "x", "fields": [{"name": "a", "type": "NoSuchType"}]}
    for backend in BACKENDS:
        with pytest.raises(SchemaSourceError, match="schema id 5 cannot be used"):
            Decoder("confluent", StaticSchemaSource({5: bad}), backend=backend).decode(value)
