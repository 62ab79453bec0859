"""Which survey wrote an alert, told by its writer schema's name, and where that survey keeps things.

A :class:`Survey` names, as dotted paths (:mod:`alertfilter.fields`), the alert id, the visit id
the per-visit cap counts by, and what ``alertfilter report`` shows: time, band, flux, S/N, the three
cutouts and the history the light curve is drawn from.

| schema name | survey | id | visit |
|---|---|---|---|
| ``lsst.v10_*.alert``, ``lsst.v11_*.alert`` | Rubin | ``diaSourceId`` | ``diaSource.visit`` |
| ``lsst.alert`` (the project's simulated 2018 family) | simulated | ``alertId`` | ``diaSource.ccdVisitId`` |
| ``ztf.alert`` | ZTF | ``candid`` | ``candidate.pid`` (one science image: an exposure's CCD quadrant) |
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD

_RUBIN_RE = re.compile(r"^lsst\.v(\d+)_(\d+)\.alert$")

#: ZTF's filter ids (``candidate.fid``).
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
#: AB zero point of the nJy scale: m = 31.4 - 2.5 log10(flux / nJy).
NJY_ZERO_POINT = 31.4


@dataclass(frozen=True)
class Survey:
    """Where one survey's alerts keep what the tools read.

    Attributes:
        name: shown to the user (``Rubin v10.0``, ``ZTF``...).
        schema: the writer schema's full name it was told from.
        id_field, visit_field: dotted paths (``--id-field``, ``--visit-field`` defaults).
        source: dotted path of the triggering detection's record (``diaSource``, ``candidate``).
        history: top-level fields holding earlier detections (lists of records like ``source``).
        cutouts: (label, dotted path) of the science, template and difference cutouts; each holds
            FITS bytes (Rubin), or a record whose ``stampData`` holds them (ZTF: gzipped).
        time_unit: ``MJD`` or ``JD``: the unit of :meth:`time`.
    """

    name: str
    schema: str
    id_field: str
    visit_field: str
    source: str
    history: tuple[str, ...]
    cutouts: tuple[tuple[str, str], ...]
    time_unit: str

    @property
    def is_ztf(self) -> bool:
        return self.schema.startswith("ztf.")

    def time(self, det: dict[str, Any]) -> float | None:
        """The detection's time (:attr:`time_unit`; days), or None."""
        return _num(det.get("jd" if self.is_ztf else "midpointMjdTai", det.get("midPointTai")))

    def band(self, det: dict[str, Any]) -> str | None:
        """The detection's band (``g``, ``r``...), or None."""
        if self.is_ztf:
            fid = det.get("fid")
            return ZTF_BANDS.get(fid, str(fid)) if fid is not None else None
        band = det.get("band", det.get("filterName"))
        return str(band) if band is not None else None

    def flux(self, det: dict[str, Any]) -> tuple[float | None, float | None]:
        """The detection's PSF flux and its error, nJy (ZTF: from ``magpsf`` and ``sigmapsf``, signed
        by ``isdiffpos``); Nones when absent or not finite."""
        if self.is_ztf:
            mag, sig = _num(det.get("magpsf")), _num(det.get("sigmapsf"))
            if mag is None:
                return None, None
            flux = 10 ** ((NJY_ZERO_POINT - mag) / 2.5)
            if det.get("isdiffpos") in ("f", "0"):
                flux = -flux
            return flux, (abs(flux) * sig * math.log(10) / 2.5 if sig is not None else None)
        return _num(det.get("psfFlux", det.get("psFlux"))), _num(det.get("psfFluxErr", det.get("psFluxErr")))

    def snr(self, det: dict[str, Any]) -> float | None:
        """The detection's signal-to-noise ratio: ``snr`` when the alert has it, else |flux| / error."""
        snr = _num(det.get("snr"))
        if snr is not None:
            return snr
        flux, err = self.flux(det)
        return abs(flux) / err if flux is not None and err else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


_CUTOUTS = (("science", "cutoutScience"), ("template", "cutoutTemplate"), ("difference", "cutoutDifference"))


def survey_of(schema_name: str) -> Survey | None:
    """The survey whose alerts the schema ``schema_name`` (a full name) describes; None when unknown."""
    m = _RUBIN_RE.match(schema_name)
    if m:
        return Survey(
            f"Rubin v{m.group(1)}.{m.group(2)}",
            schema_name,
            DEFAULT_ID_FIELD,
            DEFAULT_VISIT_FIELD,
            "diaSource",
            ("prvDiaSources",),
            _CUTOUTS,
            "MJD",
        )
    if schema_name == "lsst.alert":
        return Survey(
            "simulated lsst.alert",
            schema_name,
            "alertId",
            "diaSource.ccdVisitId",
            "diaSource",
            ("prv_diaSources",),
            _CUTOUTS[1:],  # the 2018 schema has no science cutout
            "MJD",
        )
    if schema_name == "ztf.alert":
        return Survey(
            "ZTF",
            schema_name,
            "candid",
            "candidate.pid",
            "candidate",
            ("prv_candidates",),
            _CUTOUTS,
            "JD",
        )
    return None


def schema_full_name(schema: Any) -> str:
    """The full name of a writer schema (``namespace.name``); empty when it is not a named record."""
    if not isinstance(schema, dict):
        return ""
    name = str(schema.get("name", ""))
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


def field_defaults(survey: Survey | None) -> tuple[str, str]:
    """``(visit_field, id_field)`` for alerts of ``survey``; Rubin's when unknown."""
    if survey is None:
        return DEFAULT_VISIT_FIELD, DEFAULT_ID_FIELD
    return survey.visit_field, survey.id_field
