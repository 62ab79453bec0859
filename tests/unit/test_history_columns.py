"""Histories read three ways give the same values: decoded whole, projected to a few fields of
each record (C), and as numpy columns read from the bytes (``alert.history``), on the simulated
alerts; the light-curve filters of ``both_ways.LIGHT_CURVE`` get their fast decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alertfilter.codecs import Decoder
from alertfilter.history import Alert
from alertfilter.projection import infer_fields

from .both_ways import LIGHT_CURVE, ROOT, history_both_ways

SIM = sorted((ROOT / "tests" / "data").glob("*.avro"))


@pytest.mark.parametrize("path", SIM, ids=[p.name for p in SIM])
def test_history_fields_are_identical_whichever_way_an_alert_is_decoded(path: Path) -> None:
    assert history_both_ways(path) > 0


def test_light_curve_filters_decode_only_the_history_fields_they_read() -> None:
    assert infer_fields(LIGHT_CURVE["rising flux, comprehensions (Rubin)"], "f") == {
        "prvDiaSources.psfFlux",
        "prvDiaSources.midpointMjdTai",
    }
    assert infer_fields(LIGHT_CURVE["colour change, for loop (Rubin)"], "f") == {
        "prvDiaSources.psfFlux",
        "prvDiaSources.band",
    }
    assert infer_fields(LIGHT_CURVE["variability, columns (Rubin)"], "f") == {
        "prvDiaSources[psfFlux]",
        "prvDiaSources[midpointMjdTai]",
        "prvDiaSources[band]",
    }


@pytest.mark.parametrize(
    "source",
    [
        "def f(alert):\n    for p in alert['prvDiaSources']:\n        pass\n    return p['psfFlux'] > 0\n",
        "def f(alert):\n    return [keep(p) for p in alert['prvDiaSources']]\n",
        "def f(alert):\n    return [p for p in alert['prvDiaSources'] if p['psfFlux']]\n",
        "def f(alert):\n    k = 'psfFlux'\n    return [p[k] for p in alert['prvDiaSources']]\n",
        "def f(alert):\n    return [[p['a'] for p in alert['x']] for p in alert['prvDiaSources']]\n",
    ],
)
def test_a_history_record_used_any_other_way_decodes_its_array_whole(source: str) -> None:
    fields = infer_fields(source, "f")
    assert fields is not None and "prvDiaSources" in fields


def test_history_of_a_plain_alert_follows_its_values() -> None:
    alert = Alert({"prv": [{"f": 1.5, "n": 2, "b": "g"}, {"f": None, "n": None, "b": None}], "none": None})
    f, n, b = alert.history("prv", "f", "n", "b")
    assert np.isnan(f[1]) and f[0] == 1.5
    assert n.tolist() == [2, None] and b.tolist() == ["g", None]
    assert len(alert.history("none", "f")) == 0
    with pytest.raises(KeyError):
        alert.history("missing", "f")


def test_history_refuses_fields_that_are_no_columns() -> None:
    schema = {
        "type": "record",
        "name": "A",
        "fields": [
            {
                "name": "h",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "I",
                        "fields": [
                            {"name": "x", "type": "double"},
                            {
                                "name": "pos",
                                "type": {"type": "record", "name": "P", "fields": [{"name": "ra", "type": "double"}]},
                            },
                        ],
                    },
                },
            },
        ],
    }
    import io

    import fastavro

    bio = io.BytesIO()
    fastavro.schemaless_writer(bio, fastavro.parse_schema(schema), {"h": [{"x": 1.0, "pos": {"ra": 2.0}}]})
    alert = Decoder("schemaless", schema=schema, backend="cavro", fields={"h[]"}).decode(bio.getvalue())
    assert alert.history("h", "x").tolist() == [1.0]
    with pytest.raises(TypeError, match="not a number"):
        alert.history("h", "pos")
    with pytest.raises(KeyError):
        alert.history("h", "nope")
    # a record field read in a loop: the array is decoded whole, so the filter sees it all
    whole = Decoder("schemaless", schema=schema, backend="cavro", fields={"h.pos"}).decode(bio.getvalue())
    assert whole["h"] == [{"x": 1.0, "pos": {"ra": 2.0}}]
