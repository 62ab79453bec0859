"""``alertfilter check``: a filter backtested offline on alert files (:mod:`.alertfiles`), as the runner runs
it: in a filter process of its own (:class:`~alertfilter.supervisor.FilterProcess`), fed the
alerts as Confluent-framed messages, so it decodes exactly the fields the runner would decode
(``--fields auto``), a filter that ends its process is a ``filter-crashed`` alert, and what the
filter prints goes to stderr, never into this command's output."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

from .alertfiles import AlertInputError, read_alerts
from .cap import VisitCap
from .codecs import HEADER, MAGIC_BYTE
from .decoding import DecodingSpec
from .fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD, MissingField, get_field, parse_path
from .filterspec import FilterSpec
from .outcome import Kind, Outcome
from .schemas import SchemaSource
from .settings import hard_timeout
from .supervisor import FilterProcess

ACCEPTED, CAPPED, ERROR = Kind.ACCEPTED, Kind.CAPPED, Kind.ERROR
#: Alerts handed to the filter process at a time.
BATCH = 200


@dataclass
class CheckResult:
    """What ``alertfilter check`` reports (``--json`` prints it as an object)."""

    alerts: int = 0
    accepted: int = 0
    capped: int = 0
    rejected: int = 0
    errors: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    accepted_ids: list[Any] = field(default_factory=list)
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    #: (file, index) of each accepted alert, in order (not in ``--json``: ``alertfilter check --html`` reads them).
    accepted_at: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "accepted": self.accepted,
            "capped": self.capped,
            "rejected": self.rejected,
            "errors": self.errors,
            "errors_by_reason": self.errors_by_reason,
            "accepted_ids": self.accepted_ids,
            "first_errors": self.first_errors,
        }


class AlertFileError(ValueError):
    """An alert file is not an Avro container file, or is truncated or corrupt part way.

    Attributes:
        path: the file.
        result: the :class:`CheckResult` of every alert read before the problem.
    """

    def __init__(self, message: str, path: str, result: CheckResult) -> None:
        super().__init__(message)
        self.path = path
        self.result = result


def missing_files(files: Iterable[str | Path]) -> list[str]:
    """The paths among ``files`` that do not exist (or are broken links), checked before any alert is read;
    a path that exists but is no file of alerts (a pipe, a device) is said by the reading itself."""
    return [str(f) for f in files if not Path(f).exists()]


@dataclass
class _Alert:
    path: str
    index: int
    alert_id: Any
    visit: Any
    value: bytes


def _alerts(
    files: Iterable[str | Path],
    schema_dir: Path,
    ids: dict[str, int],
    problem: list[AlertFileError],
    id_path: tuple[str, ...],
    visit_path: tuple[str, ...],
    res: CheckResult,
    schemas: SchemaSource | None = None,
) -> Iterator[_Alert]:
    """Each alert of ``files`` (:func:`~alertfilter.alertfiles.read_alerts`: container files, wire
    messages, directories) as the message the runner would get; an input that cannot be read puts
    its :class:`AlertFileError` in ``problem`` and ends the iteration."""
    try:
        for fa in read_alerts(files, schemas):
            sid = ids.get(fa.schema_text)
            if sid is None:
                sid = ids[fa.schema_text] = len(ids) + 1
                (schema_dir / f"{sid}.avsc").write_text(fa.schema_text)
            if fa.body is not None:  # a wire message: its own bytes, under the id this run gave its schema
                value = HEADER.pack(MAGIC_BYTE, sid) + fa.body
            else:
                bio = io.BytesIO()
                bio.write(HEADER.pack(MAGIC_BYTE, sid))
                fastavro.schemaless_writer(bio, fastavro.parse_schema(fa.schema), fa.record)
                value = bio.getvalue()
            alert_id = visit = None
            if isinstance(fa.record, dict):
                with contextlib.suppress(MissingField):
                    alert_id = get_field(fa.record, id_path, allow_null=True)
                with contextlib.suppress(MissingField):
                    visit = get_field(fa.record, visit_path)
            yield _Alert(fa.path, fa.index, alert_id, visit, value)
    except AlertInputError as exc:
        problem.append(AlertFileError(str(exc), exc.path, res))


def check(
    source: str,
    files: Iterable[str | Path],
    entrypoint: str | None = None,
    max_per_visit: int | None = 20,
    visit_field: str = DEFAULT_VISIT_FIELD,
    id_field: str = DEFAULT_ID_FIELD,
    filter_timeout_s: float | None = 1.0,
    fields: str = "auto",
    schemas: SchemaSource | None = None,
) -> CheckResult:
    """Run the filter ``source`` over the alerts of ``files`` in file order (container files,
    Confluent-wire messages whose schemas ``schemas`` gives, directories of them), as the runner would: in a filter process, decoding what ``--fields fields`` decodes, with the per-visit cap
    (``max_per_visit``; None: none), the time budget (s) and the hard limit it implies.

    Raises:
        FilterLoadError: the filter cannot be loaded (its ``line`` and ``column``; 0 when not the source's).
        FilterProcessError: the filter process could not start.
        OSError: a file cannot be opened.
        AlertFileError: a file is not an alert file (said what it is), or is truncated or corrupt; its ``result``
            counts every alert read before (the files after it are not read).
    """
    files = list(files)
    res = CheckResult()
    reasons: Counter[str] = Counter()
    cap = VisitCap(max_per_visit)
    budget = filter_timeout_s or 0.0
    problem: list[AlertFileError] = []
    with tempfile.TemporaryDirectory(prefix="alertfilter-check-") as tmp:
        ids: dict[str, int] = {}
        alerts = _alerts(files, Path(tmp), ids, problem, parse_path(id_field), parse_path(visit_field), res, schemas)
        first = [a for _, a in zip(range(BATCH), alerts, strict=False)]  # the schemas the process needs
        spec = FilterSpec(
            source, entrypoint, DecodingSpec("confluent", schema_dir=tmp), visit_field, id_field, budget, fields
        )
        proc = FilterProcess(spec, hard_timeout(budget, None))
        try:
            proc.start()
            batch = first
            while batch:
                for a, oc in zip(batch, proc.verdicts([a.value for a in batch]), strict=True):
                    _count(res, reasons, cap, a, oc)
                batch = [a for _, a in zip(range(BATCH), alerts, strict=False)]
        finally:
            proc.close()
    res.errors_by_reason = dict(reasons)
    if problem:
        raise problem[0]
    return res


def _count(res: CheckResult, reasons: Counter[str], cap: VisitCap, a: _Alert, oc: Outcome) -> None:
    """Count the filter process's verdict ``oc`` on ``a``; the cap counts the visit read here, as the runner's."""
    res.alerts += 1
    if oc.kind == ACCEPTED:
        visit = a.visit if isinstance(a.visit, int | str) and not isinstance(a.visit, bool) else oc.visit
        if cap.admit(visit):
            res.accepted += 1
            res.accepted_ids.append(a.alert_id)
            res.accepted_at.append((a.path, a.index))
        else:
            res.capped += 1
    elif oc.kind == ERROR:
        res.errors += 1
        reasons[str(oc.reason)] += 1
        if len(res.first_errors) < 20:
            res.first_errors.append(
                {
                    "file": a.path,
                    "index": a.index,
                    "alert_id": a.alert_id,
                    "reason": str(oc.reason),
                    "message": oc.message,
                }
            )
    else:
        res.rejected += 1
