"""The CRDs in crds/ are exactly what the typed models generate; examples embed the example filters."""

from pathlib import Path

import yaml

from alertfilter import load_filter

ROOT = Path(__file__).resolve().parents[2]


def test_crds_match_the_models():
    from alertfilter_operator.crdgen import main

    assert main([str(ROOT / "crds"), "--check"]) == 0, "run: .venv/bin/python -m alertfilter_operator.crdgen crds"


def _walk(schema, path="spec"):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_every_field_has_a_description():
    for f in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(f.read_text())
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            for path, node in _walk(root["properties"][part], part):
                assert node.get("description"), f"{f.name}: {path} has no description"


def test_example_manifests_embed_the_example_filters():
    for m in (ROOT / "examples").glob("alertfilter-*.yaml"):
        spec = yaml.safe_load(m.read_text())["spec"]
        name = m.stem.removeprefix("alertfilter-").replace("-", "_") + ".py"
        assert spec["source"] == (ROOT / "examples" / "filters" / name).read_text(), m.name
        if "broken" not in name:
            load_filter(spec["source"], spec.get("entrypoint"))
