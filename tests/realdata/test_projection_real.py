"""Projected decoding: the fields a filter reads, decoded exactly as a full decode gives them."""

import fastavro
import pytest

from alertfilter.codecs import encode_confluent, read_container
from alertfilter.projection import ProjectedDecoder, cavro_decoder


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("rubin-v10_0-real-20.avro", {"diaSourceId", "diaSource"}),
        ("rubin-v10_0-history-4.avro", {"diaSourceId", "diaSource", "diaObject"}),
        ("rubin-v10_0-history-4.avro", {"prvDiaSources", "cutoutScience"}),
        ("ZTF19acihgng.avro", {"objectId", "candidate"}),
        ("ZTF19acxxwrs.avro", {"prv_candidates", "cutoutDifference"}),
    ],
)
def test_projected_fields_equal_the_full_decode(alerts_dir, name, fields):
    schema, records = read_container(str(alerts_dir / name))
    parsed = fastavro.parse_schema(schema)
    dec = ProjectedDecoder(schema, fields, cavro_decoder)
    for rec in records:
        body = encode_confluent(rec, parsed, 1)[5:]
        got = dec.decode(body)
        assert set(got) == fields
        for f in fields:
            assert repr(got[f]) == repr(rec[f])  # repr: NaN compares equal to NaN


def test_bad_bodies_are_errors(alerts_dir):
    schema, records = read_container(str(alerts_dir / "rubin-v10_0-history-4.avro"))
    body = encode_confluent(records[0], fastavro.parse_schema(schema), 1)[5:]
    dec = ProjectedDecoder(schema, {"diaSource"}, cavro_decoder)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        dec.decode(body[: len(body) // 2])
    with pytest.raises(ValueError, match="left over"):
        dec.decode(body + b"\x00\x00")
    with pytest.raises(ValueError):  # noqa: PT011 - whichever error the skipper meets first
        dec.decode(b"\xff" * 40)
