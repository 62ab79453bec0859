"""Regenerate the small simulated alert files in ``tests/data`` (``python tests/data/make_alerts.py``).

The alerts come from the project's own simulator (:func:`alertfilter.simulate.simulate`, schema
``lsst.alert`` from ``schemas/``); nothing here is copied from the shared real alerts. The output is
byte-for-byte reproducible: fixed seeds, and a fixed Avro sync marker (fastavro draws a random one
otherwise). ``tests/unit/test_data_fixture.py`` fails when the committed files and this script drift.

Two edits to the simulator's records, both so that tests can assert exact figures:
- every alert of visit ``v`` gets ``diaSource.ccdVisitId = v * 1000 + 7`` (the simulator draws a
  random detector per alert, which would make each alert its own CCD-visit and the per-visit cap
  untestable);
- the visits are interleaved (see :data:`ORDER`), as Kafka partitions deliver them.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from alertfilter.simulate import alert_schema, simulate

HERE = Path(__file__).resolve().parent
#: 16 bytes, as the Avro container spec requires; fixed so that regenerating changes no byte.
SYNC_MARKER = b"alertfilter-test"
#: Bytes of each cutout's stamp: small, so the file stays a few KB (Rubin's are 34,560 B).
CUTOUT_BYTES = 64
#: The detector every fixture alert is put on (see the module docstring).
DETECTOR = 7
#: Visit ids and, per visit, the history length (``prv_diaSources``) of each of its 4 alerts.
VISITS: dict[int, list[int]] = {101: [0, 0, 1, 3], 102: [0, 2, 0, 0], 103: [5, 0, 0, 1]}
#: Arrival order of the 12 alerts, as (visit, index within the visit): visits interleave.
ORDER: list[tuple[int, int]] = [
    (101, 0),
    (101, 1),
    (102, 0),
    (101, 2),
    (102, 1),
    (103, 0),
    (101, 3),
    (102, 2),
    (103, 1),
    (103, 2),
    (102, 3),
    (103, 3),
]
SIM_FILE = "sim-lsst-alert-12.avro"
SINGLE_FILE = "sim-lsst-alert-1.avro"


def fixture_alerts() -> list[dict[str, Any]]:
    """The 12 fixture alerts in arrival order; ``alertId`` is 1..12 in that order."""
    by_key: dict[tuple[int, int], dict[str, Any]] = {}
    seed = 0
    for visit, histories in VISITS.items():
        for index, history in enumerate(histories):
            seed += 1
            (alert,) = simulate([visit], 1, history=history, seed=seed, cutout_bytes=CUTOUT_BYTES)
            alert["diaSource"]["ccdVisitId"] = visit * 1000 + DETECTOR
            by_key[(visit, index)] = alert
    alerts = [by_key[key] for key in ORDER]
    for new_id, alert in enumerate(alerts, start=1):
        # Renumber so ids follow arrival order; keep each history's ids derived from its alert's.
        alert["alertId"] = alert["l1dbId"] = alert["diaSource"]["diaSourceId"] = new_id
        for k, prv in enumerate(alert["prv_diaSources"] or []):
            prv["diaSourceId"] = new_id * 1000 + k
        alert["cutoutDifference"]["fileName"] = f"diff-{new_id}.fits"
        alert["cutoutTemplate"]["fileName"] = f"tmpl-{new_id}.fits"
    return alerts


def container_bytes(alerts: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> bytes:
    """An Avro object container file (codec ``null``) of ``alerts`` with the fixed sync marker."""
    # fastavro's schema expansion and parsing give dicts whose key order varies with
    # PYTHONHASHSEED; sorting the keys of the parsed schema makes the header stable. Field order,
    # which Avro depends on, lives in lists and is kept.
    schema = json.loads(json.dumps(fastavro.parse_schema(alert_schema()), sort_keys=True))
    out = io.BytesIO()
    fastavro.writer(out, schema, alerts, codec="null", sync_marker=SYNC_MARKER)
    return out.getvalue()


def expected_files() -> dict[str, bytes]:
    """File name in ``tests/data`` -> the bytes it must hold."""
    alerts = fixture_alerts()
    return {SIM_FILE: container_bytes(alerts), SINGLE_FILE: container_bytes(alerts[:1])}


def main() -> int:
    """Write the fixture files next to this script; returns the exit code (0)."""
    for name, data in expected_files().items():
        (HERE / name).write_bytes(data)
        print(f"{HERE / name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
