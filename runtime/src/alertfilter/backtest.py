"""``alertfilter check``: a filter backtested offline on Avro container files, with the runner's
rules (the per-visit cap, errors, the time budget), in this process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

from .api import LoadedFilter
from .cap import VisitCap
from .codecs import Decoder
from .fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD
from .outcome import Outcome
from .processor import ACCEPTED, CAPPED, ERROR, AlertProcessor


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


def check(
    flt: LoadedFilter,
    files: Iterable[str | Path],
    max_per_visit: int | None = 20,
    visit_field: str = DEFAULT_VISIT_FIELD,
    id_field: str = DEFAULT_ID_FIELD,
    filter_timeout_s: float | None = 1.0,
) -> CheckResult:
    """Run ``flt`` over the alerts of container ``files`` in file order, with the runner's rules.

    Raises:
        OSError: a file cannot be opened.
        AlertFileError: a file is not an Avro container, or is truncated or corrupt; its ``result``
            counts the alerts read before (the files after it are not read).
    """
    proc = AlertProcessor(flt, Decoder("container"), VisitCap(max_per_visit), visit_field, id_field, filter_timeout_s)
    res = CheckResult()
    reasons: Counter[str] = Counter()
    for path in files:
        with open(path, "rb") as fh:
            try:
                records = iter(fastavro.reader(fh))
            except Exception as exc:  # noqa: BLE001 - fastavro raises several kinds on a bad header
                res.errors_by_reason = dict(reasons)
                raise AlertFileError(
                    f"file {path} is not an Avro container file: {type(exc).__name__}: {exc}", str(path), res
                ) from None
            index = 0
            while True:
                try:
                    alert = next(records)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - EOFError, ValueError, zlib.error, ...
                    res.errors_by_reason = dict(reasons)
                    raise AlertFileError(
                        f"file {path} is truncated or corrupt after {index} alerts: {type(exc).__name__}: {exc}",
                        str(path),
                        res,
                    ) from None
                oc = (
                    proc.process_alert(alert)
                    if isinstance(alert, dict)
                    else Outcome(ERROR, "decode-error", f"record is {type(alert).__name__}, not a record")
                )
                res.alerts += 1
                if oc.kind == ACCEPTED:
                    res.accepted += 1
                    res.accepted_ids.append(oc.alert_id)
                elif oc.kind == CAPPED:
                    res.capped += 1
                elif oc.kind == ERROR:
                    res.errors += 1
                    reasons[oc.reason] += 1
                    if len(res.first_errors) < 20:
                        res.first_errors.append(
                            {
                                "file": str(path),
                                "index": index,
                                "alert_id": oc.alert_id,
                                "reason": oc.reason,
                                "message": oc.message,
                            }
                        )
                else:
                    res.rejected += 1
                index += 1
    res.errors_by_reason = dict(reasons)
    return res


# --- produce -------------------------------------------------------------------------------------
