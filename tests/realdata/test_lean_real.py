"""Lean alerts on every shared real file: the spliced message decodes to the original with its
cutouts null, under the same schema id, and is what the lean producer writes."""

from __future__ import annotations

import io

import fastavro
import pytest

from alertfilter.codecs import Decoder, encode_confluent, read_container
from alertfilter.lean import CUTOUT_FIELDS, Splicer, cutout_fields, splice_confluent
from alertfilter.leanstream import lean_value
from alertfilter.schemas import StaticSchemaSource
from tests.conftest import data_dir

FILES = sorted(p.name for p in (data_dir() / "alerts").glob("*.avro"))


def test_every_shared_file_is_covered():
    assert {"rubin-v10_0-real-20.avro", "rubin-v10_0-history-4.avro", "ZTF19acihgng.avro"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_the_spliced_message_decodes_to_the_original_with_null_cutouts(alerts_dir, name):
    schema, records = read_container(str(alerts_dir / name))
    parsed = fastavro.parse_schema(schema)
    splicer = Splicer(schema)
    assert set(splicer.fields) == set(cutout_fields(schema)) == CUTOUT_FIELDS  # Rubin v10 and ZTF name all three
    for rec in records:
        value = encode_confluent(rec, parsed, 1000)
        lean = splice_confluent(value, lambda sid: splicer)
        assert lean[:5] == value[:5]  # same magic byte and schema id
        got = fastavro.schemaless_reader(io.BytesIO(lean[5:]), parsed)
        want = {**rec, **dict.fromkeys(CUTOUT_FIELDS)}
        assert repr(got) == repr(want)  # repr: NaN equals NaN
        assert len(lean) < len(value)
        # spliced twice: nothing more to remove, the same bytes
        assert splice_confluent(lean, lambda sid: splicer) == lean


def test_a_lean_rubin_alert_is_a_few_hundred_bytes(alerts_dir):
    schema, records = read_container(str(alerts_dir / "rubin-v10_0-real-20.avro"))
    parsed = fastavro.parse_schema(schema)
    values = [encode_confluent(r, parsed, 1000) for r in records]
    dec = Decoder("confluent", StaticSchemaSource({1000: schema}), backend="cavro")
    splicers = {1000: Splicer(schema)}
    lean = [lean_value(v, splicers.__getitem__) for v in values]
    assert all(reason is None for _, reason in lean)
    full_bytes, lean_bytes = sum(map(len, values)), sum(len(v or b"") for v, _ in lean)
    assert lean_bytes * 50 < full_bytes  # ~108 KB each, of which ~107.7 KB are the cutouts
    for (v, _), rec in zip(lean, records, strict=True):
        alert = dec.decode(v)
        assert alert["diaSourceId"] == rec["diaSourceId"] and alert["cutoutScience"] is None
