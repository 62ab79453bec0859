"""Schema-valid simulated alerts (``alertfilter simulate``), in the project's ``lsst.alert`` schema.

The values are random but plausible (fluxes in nJy, positions in degrees); visit ids, counts and
the number of previous detections (``prv_diaSources``) are chosen by the caller, so tests and
benchmarks can make any volume of alerts with any decode cost.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from .schemas import load_schema_file

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
#: Rubin's cutouts are 34,560 B each in the shared real alerts; the simulator's default matches.
DEFAULT_CUTOUT_BYTES = 34_560
#: nJy of an AB magnitude 0 source: flux_nJy = 10**((31.4 - m) / 2.5).
AB_ZEROPOINT_NJY_MAG = 31.4


def alert_schema() -> dict[str, Any]:
    """The ``lsst.alert`` schema (self-contained dict)."""
    return load_schema_file(SCHEMA_DIR / "lsst.alert.avsc")


def _dia_source(rng: random.Random, source_id: int, ccd_visit_id: int, object_id: int, mjd: float) -> dict[str, Any]:
    mag = rng.uniform(16.0, 24.5)
    flux = 10 ** ((AB_ZEROPOINT_NJY_MAG - mag) / 2.5) * rng.choice((1, 1, 1, -1))
    err = abs(flux) / rng.uniform(1.0, 60.0)
    ra, dec = rng.uniform(0, 360), rng.uniform(-90, 30)
    band = rng.choice("ugrizy")
    return {
        "diaSourceId": source_id,
        "ccdVisitId": ccd_visit_id,
        "diaObjectId": object_id,
        "ssObjectId": None,
        "parentDiaSourceId": None,
        "midPointTai": mjd,
        "filterName": band,
        "ra": ra,
        "decl": dec,
        "ra_decl_Cov": {"raSigma": 1e-5, "declSigma": 1e-5, "ra_decl_Cov": 0.0},
        "x": rng.uniform(0, 4000),
        "y": rng.uniform(0, 4000),
        "x_y_Cov": {"xSigma": 0.1, "ySigma": 0.1, "x_y_Cov": 0.0},
        "apFlux": flux * 1.02,
        "apFluxErr": err,
        "snr": abs(flux) / err,
        "psFlux": flux,
        "psFluxErr": err,
        "psRa": ra,
        "psDecl": dec,
        "psLnL": -rng.uniform(0, 50),
        "psChi2": rng.uniform(0, 50),
        "trailFlux": None,
        "trailLength": None,
        "dipMeanFlux": None,
        "dipFluxDiff": None,
        "totFlux": abs(flux) * 3,
        "totFluxErr": err * 2,
        "diffFlux": flux,
        "diffFluxErr": err,
        "fpBkgd": rng.uniform(0, 100),
        "ixx": 2.0,
        "iyy": 2.0,
        "ixy": 0.0,
        "extendedness": rng.random(),
        "spuriousness": rng.random(),
        "flags": 0,
    }


def simulate(
    visits: list[int],
    alerts_per_visit: int,
    history: int = 0,
    seed: int = 0,
    cutout_bytes: int = DEFAULT_CUTOUT_BYTES,
    first_id: int = 1,
) -> Iterator[dict[str, Any]]:
    """Yield alerts, ``alerts_per_visit`` for each visit id in ``visits`` (in that order).

    Args:
        visits: visit ids; ``diaSource.ccdVisitId`` is ``visit * 1000 + detector``.
        history: number of previous detections (``prv_diaSources``) per alert.
        cutout_bytes: size of each of the two cutouts' stamp, bytes.
        first_id: ``alertId`` and ``diaSource.diaSourceId`` of the first alert; each next alert adds 1.
    """
    rng = random.Random(seed)
    stamp = bytes(rng.getrandbits(8) for _ in range(min(cutout_bytes, 256))) * (cutout_bytes // 256 + 1)
    stamp = stamp[:cutout_bytes]
    next_id = first_id
    for v_index, visit in enumerate(visits):
        mjd = 61000.0 + v_index * 39 / 86400
        for _ in range(alerts_per_visit):
            obj = rng.getrandbits(40)
            ccd_visit = visit * 1000 + rng.randrange(189)
            src = _dia_source(rng, next_id, ccd_visit, obj, mjd)
            prv = [
                _dia_source(rng, next_id * 1000 + k, ccd_visit - 1000 * (k + 1), obj, mjd - k - 1)
                for k in range(history)
            ]
            yield {
                "alertId": next_id,
                "l1dbId": next_id,
                "diaSource": src,
                "prv_diaSources": prv or None,
                "diaObject": {
                    "diaObjectId": obj,
                    "ra": src["ra"],
                    "decl": src["decl"],
                    "ra_decl_Cov": {"raSigma": 1e-5, "declSigma": 1e-5, "ra_decl_Cov": 0.0},
                    "radecTai": mjd,
                    "pmRa": 0.0,
                    "pmDecl": 0.0,
                    "parallax": 0.0,
                    **{f"{b}PSFluxMean": None for b in "ugrizy"},
                    **{f"{b}PSFluxMeanErr": None for b in "ugrizy"},
                    **{f"{b}PSFluxNdata": None for b in "ugrizy"},
                    "flags": 0,
                },
                "ssObject": None,
                "diaObjectL2": None,
                "diaSourcesL2": None,
                "cutoutDifference": {"fileName": f"diff-{next_id}.fits", "stampData": stamp},
                "cutoutTemplate": {"fileName": f"tmpl-{next_id}.fits", "stampData": stamp},
            }
            next_id += 1


def write_container(path: str | Path, alerts: Iterator[dict[str, Any]], schema: dict[str, Any] | None = None) -> int:
    """Write alerts to an Avro object container file; returns how many were written."""
    schema = schema or alert_schema()
    parsed = fastavro.parse_schema(schema)
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for a in alerts:
            count += 1
            yield a

    with open(path, "wb") as fh:
        fastavro.writer(fh, parsed, counted(), codec="null")
    return count
