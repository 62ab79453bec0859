"""Every example and test filter, run on alert files two ways: with the decoding the runner chooses
(``--fields auto``: projected when the filter's reads are known) and with every field decoded.
Shared by the unit test (``tests/data``) and the real-data test (``../shared/data``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import yaml

from alertfilter import load_filter
from alertfilter.cap import VisitCap
from alertfilter.codecs import Decoder
from alertfilter.decoding import decode_fields
from alertfilter.processor import AlertProcessor

ROOT = Path(__file__).resolve().parents[2]

#: Filters whose reads a first reading gets wrong: each must be decoded whole (any doubt).
DOUBTFUL = {
    "last def wins, reads through eval": (
        "def f(alert):\n    return alert['diaSource'] is not None\n\n"
        "def f(alert):\n    return eval('alert[\"diaObject\"]') is not None\n"
    ),
    "getattr": "def f(alert):\n    return getattr(alert, 'get')('diaObject') is not None\n",
    "dynamic key": "KEY = 'dia' + 'Object'\n\ndef f(alert):\n    return alert[KEY] is not None\n",
    "alert passed whole": "def _has(a, k):\n    return a.get(k) is not None\n\ndef f(alert):\n    return _has(alert, 'diaObject')\n",
    "vars": "def f(alert):\n    return vars().get('alert').get('diaObject') is not None\n",
    "globals": "def f(alert):\n    globals()['seen'] = alert\n    return seen.get('diaObject') is not None\n",
    "def in an if": "if True:\n    def f(alert):\n        return alert['diaSource'] is not None\n\n"
    "if True:\n    def f(alert):\n        return alert.get('diaObject') is not None\n",
    "class filter redefined": (
        "from alertfilter import AlertFilter\n\nclass F(AlertFilter):\n    def filter(self, alert):\n"
        "        return alert['diaSource'] is not None\n\n    def filter(self, alert):\n"
        "        return len(alert) > 5\n"
    ),
    "frame": "import sys\n\ndef f(alert):\n    return sys._getframe().f_locals['alert'].get('diaObject') is not None\n",
    "iterated": "def f(alert):\n    return sum(1 for k in alert if alert[k] is not None) > 3\n",
}


def filter_sources() -> dict[str, str]:
    """Every filter of ``examples/`` (files and the resources' ``source``), the test suite's own
    (``tests/unit/test_filter_decider.py``) and :data:`DOUBTFUL`, by a name; the ones that do not
    load (the broken-syntax example) are left out."""
    from tests.unit.test_filter_decider import LOADABLE

    out: dict[str, str] = {}
    for f in sorted((ROOT / "examples" / "filters").glob("*.py")):
        out[f"examples/filters/{f.name}"] = f.read_text()
    for f in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            src = (doc or {}).get("spec", {}).get("source")
            if src:
                out[f"examples/{f.name}"] = src
    out.update({f"test_filter_decider: {k}": v for k, v in LOADABLE.items()})
    out.update({f"doubtful: {k}": v for k, v in DOUBTFUL.items()})
    loadable = {}
    for name, src in out.items():
        try:
            load_filter(src)
        except ValueError:
            continue
        loadable[name] = src
    return loadable


def fields_of(schema: dict[str, Any]) -> tuple[str, str]:
    """The visit and id fields of a file's alerts (Rubin v10, the simulated lsst.alert, ZTF)."""
    name = str(schema.get("name", ""))
    if name.startswith("ztf"):
        return "candidate.pid", "candid"
    if any(f["name"] == "alertId" for f in schema["fields"]):
        return "diaSource.ccdVisitId", "alertId"
    return "diaSource.visit", "diaSourceId"


def verdicts(source: str, path: Path, projected: bool) -> tuple[list[tuple[str, str, Any]], bool]:
    """``(kind, reason, alert id)`` per alert of ``path``, and whether the decoding was projected."""
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        writer = json.loads(reader.metadata["avro.schema"])
        records = list(reader)
    parsed = fastavro.parse_schema(writer)
    visit_field, id_field = fields_of(writer)
    flt = load_filter(source)
    fields = decode_fields("auto", flt, source, visit_field, id_field) if projected else None
    decoder = Decoder("schemaless", schema=writer, backend="cavro", fields=fields)
    proc = AlertProcessor(flt, decoder, VisitCap(None), visit_field, id_field, filter_timeout_s=0)
    out = []
    for rec in records:
        bio = io.BytesIO()
        fastavro.schemaless_writer(bio, parsed, rec)
        oc = proc.process(bio.getvalue())
        out.append((str(oc.kind), str(oc.reason), oc.alert_id))
    return out, decoder.projects()
