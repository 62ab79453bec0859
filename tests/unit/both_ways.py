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


#: Light-curve filters: they read a few fields of every record of a history array, as dicts in a
#: loop or comprehension (decoded in C, the rest skipped) or as columns (``alert.history``). Each
#: survey names its history and fields differently; on another survey's alerts they are errors,
#: which must be the same errors both ways.
LIGHT_CURVE = {
    "rising flux, comprehensions (Rubin)": (
        "def f(alert):\n"
        "    flux = [p['psfFlux'] for p in alert['prvDiaSources'] or [] if p['psfFlux'] is not None]\n"
        "    mjd = [p['midpointMjdTai'] for p in alert['prvDiaSources'] or []]\n"
        "    return len(flux) > 1 and flux[-1] > flux[0] and mjd[-1] >= mjd[0]\n"
    ),
    "colour change, for loop (Rubin)": (
        "def f(alert):\n"
        "    last = {}\n"
        "    for p in alert['prvDiaSources']:\n"
        "        if p.get('psfFlux') is not None:\n"
        "            last[p['band']] = p['psfFlux']\n"
        "    return last.get('g', 0.0) > last.get('r', 0.0)\n"
    ),
    "variability, columns (Rubin)": (
        "import numpy as np\n\n"
        "def f(alert):\n"
        "    flux, mjd, band = alert.history('prvDiaSources', 'psfFlux', 'midpointMjdTai', 'band')\n"
        "    g = flux[band == 'g']\n"
        "    return bool(len(mjd) > 3 and np.nanstd(g) > 0.1 * abs(np.nanmean(flux))) if len(g) > 1 else False\n"
    ),
    "forced photometry, columns (Rubin)": (
        "def f(alert):\n"
        "    flux, mjd = alert.history('prvDiaForcedSources', 'psfFlux', 'midpointMjdTai')\n"
        "    return bool((flux > 0).sum() > len(flux) // 2) and alert['diaSource']['snr'] > 5\n"
    ),
    "rising, comprehension (simulated)": (
        "def f(alert):\n"
        "    flux = [p['psFlux'] for p in alert['prv_diaSources'] or [] if p.get('psFlux') is not None]\n"
        "    return len(flux) > 1 and flux[-1] > flux[0]\n"
    ),
    "history columns (simulated)": (
        "def f(alert):\n"
        "    flux, band = alert.history('prv_diaSources', 'psFlux', 'filterName')\n"
        "    return bool(len(flux) and (band == 'r').any())\n"
    ),
    "magnitudes, columns and loop (ZTF)": (
        "def f(alert):\n"
        "    jd, mag, fid = alert.history('prv_candidates', 'jd', 'magpsf', 'fid')\n"
        "    seen = sum(1 for c in alert['prv_candidates'] if c['magpsf'] is not None)\n"
        "    return bool(seen > 3 and fid.count() >= seen and (mag < 19).any())\n"
    ),
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
    out.update({f"light curve: {k}": v for k, v in LIGHT_CURVE.items()})
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


def history_both_ways(path: Path) -> int:
    """Decode every alert of ``path`` fully and with every history array projected (all its
    scalar fields, as dicts and as columns) and assert the results are identical; returns how
    many array values were compared."""
    import numpy as np

    from alertfilter.history import column_kind
    from alertfilter.projection import schema_columns

    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        writer = json.loads(reader.metadata["avro.schema"])
        records = list(reader)
    parsed = fastavro.parse_schema(writer)
    arrays = schema_columns(writer).arrays
    scalars = {
        a: [f for f, (_, t) in shape.fields.items() if column_kind(t) is not None] for a, shape in arrays.items()
    }
    spec = {f"{a}.{f}" for a, fs in scalars.items() for f in fs}
    full_dec = Decoder("schemaless", schema=writer, backend="cavro")
    proj_dec = Decoder("schemaless", schema=writer, backend="cavro", fields=spec)
    cols_dec = Decoder("schemaless", schema=writer, backend="cavro", fields={f"{a}[]" for a in arrays})
    walk_dec = Decoder(
        "schemaless", schema=writer, backend="cavro", fields={f"{a}[{f}]" for a, fs in scalars.items() for f in fs}
    )
    assert proj_dec.projects() and cols_dec.projects() and walk_dec.projects()
    compared = 0
    for rec in records:
        bio = io.BytesIO()
        fastavro.schemaless_writer(bio, parsed, rec)
        full, proj, cols, walk = (d.decode(bio.getvalue()) for d in (full_dec, proj_dec, cols_dec, walk_dec))
        for a, fs in scalars.items():
            want = None if full[a] is None else [{f: item[f] for f in fs} for item in full[a]]
            assert proj[a] == want, (path.name, a)
            assert a not in cols and a not in walk  # kept as bytes (and columns) only
            for f in fs:
                from_bytes, from_dicts, from_proj = cols.history(a, f), full.history(a, f), proj.history(a, f)
                for other in (from_dicts, from_proj, walk.history(a, f)):
                    assert type(from_bytes) is type(other) and from_bytes.dtype == other.dtype, (a, f)
                    if from_bytes.dtype == object:
                        assert list(from_bytes) == list(other), (a, f)
                    else:
                        assert np.array_equal(np.ma.getdata(from_bytes), np.ma.getdata(other), equal_nan=True)
                        assert np.array_equal(np.ma.getmaskarray(from_bytes), np.ma.getmaskarray(other))
                values = [item[f] for item in full[a] or []]
                got = from_bytes.tolist()  # a masked entry gives None
                assert [None if isinstance(v, float) and v != v else v for v in got] == values, (a, f)
            compared += 1
    return compared
