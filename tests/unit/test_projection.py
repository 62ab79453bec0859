"""Projected decoding: the fields a filter reads, decoded exactly as a full decode gives them."""

import fastavro
import pytest

from alertfilter.projection import ProjectedDecoder, available, cavro_decoder, compile_program, infer_fields


def test_the_compiled_skipper_is_installed():
    assert available(), "alertfilter._avroskip was not compiled: `pip install -e runtime` needs a C compiler"


def test_recursive_and_named_types_compile():
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
            {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 4}},
            {"name": "attrs", "type": {"type": "map", "values": "double"}},
            {"name": "children", "type": {"type": "array", "items": "Node"}},
        ],
    }
    value = {
        "kind": "B",
        "tag": b"abcd",
        "attrs": {"x": 1.5},
        "children": [{"kind": "A", "tag": b"wxyz", "attrs": {}, "children": []}],
    }
    import io

    bio = io.BytesIO()
    fastavro.schemaless_writer(bio, fastavro.parse_schema(schema), value)
    got = ProjectedDecoder(schema, {"attrs", "kind"}, cavro_decoder).decode(bio.getvalue())
    assert got == {"kind": "B", "attrs": {"x": 1.5}}
    with pytest.raises(ValueError, match="not a record"):
        compile_program({"type": "array", "items": "long"})


@pytest.mark.parametrize(
    ("source", "name", "fields"),
    [
        ("def f(alert):\n    return alert['diaSource']['snr'] > 5\n", "f", {"diaSource"}),
        (
            "def f(a):\n    s = a.get('diaSource', {})\n    return a['diaObject'] is None or s['snr'] > 1\n",
            "f",
            {"diaSource", "diaObject"},
        ),
        (
            (
                "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    def filter(self, alert):\n"
                "        return alert['ssSource'] is not None\n"
            ),
            "F",
            {"ssSource"},
        ),
        # anything else done with the alert: decode all of it
        ("def f(alert):\n    return helper(alert)\n", "f", None),
        ("def f(alert):\n    return 'diaSource' in alert\n", "f", None),
        ("def f(alert):\n    k = 'diaSource'\n    return alert[k] is not None\n", "f", None),
        ("def f(alert):\n    return any(x for x in alert)\n", "f", None),
        ("def f(alert):\n    g = lambda: alert['x']\n    return g()\n", "f", None),
        ("def f(alert):\n    return alert.keys() is not None\n", "f", None),
        ("def f(:\n", "f", None),
    ],
)
def test_inference_of_the_fields_a_filter_reads(source, name, fields):
    assert infer_fields(source, name) == fields


def _fields_for(tmp_path, source, *extra):
    from alertfilter import load_filter
    from alertfilter.cli import build_parser, resolve_run_args
    from alertfilter.decoding import decode_fields

    f = tmp_path / "f.py"
    f.write_text(source)
    args = build_parser().parse_args(["run", "--filter", str(f), *extra])
    resolve_run_args(args)
    return decode_fields(args.fields, load_filter(source), source, args.visit_field, args.id_field)


def test_runner_decodes_what_the_filter_reads_plus_visit_and_id(tmp_path):
    src = "def f(alert):\n    return alert['diaObject'] is None\n"
    assert _fields_for(tmp_path, src) == {"diaObject", "diaSource", "diaSourceId"}
    assert _fields_for(tmp_path, src, "--fields", "all") is None
    assert _fields_for(tmp_path, src, "--fields", "ssSource", "--id-field", "alertId") == {
        "ssSource",
        "diaSource",
        "alertId",
    }


def test_a_declared_field_list_wins_and_unknown_use_decodes_everything(tmp_path):
    declared = (
        "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    fields = ['cutoutScience']\n"
        "    def filter(self, alert):\n        return check(alert)\n\ndef check(a):\n    return True\n"
    )
    assert _fields_for(tmp_path, declared) == {"cutoutScience", "diaSource", "diaSourceId"}
    assert _fields_for(tmp_path, "def f(alert):\n    return len(alert) > 3\n") is None
