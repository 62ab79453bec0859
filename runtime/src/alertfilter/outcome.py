"""What can happen to one alert: the :class:`Outcome` of deciding it, its :class:`Kind` and, for an
error, its :class:`Reason`; :class:`Filters`, what gives outcomes to the runner. No dependencies:
the runner, the filter process and ``check`` share it.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Kind(StrEnum):
    """The fate of one alert (a ``str``: ``Kind.ACCEPTED == "accepted"``)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the filter said no
    CAPPED = "capped"  # the filter said yes, but its visit already had N accepted alerts
    ERROR = "error"  # see the Reason


class Reason(StrEnum):
    """Why an alert could not be filtered: the value of the dead-letter header
    ``alertfilter.error.reason`` and of the ``reason`` label of ``alertfilter_errors_total``."""

    DECODE = "decode-error"
    MISSING_VISIT = "missing-visit-field"
    INVALID_VISIT = "invalid-visit-field"
    FILTER_EXCEPTION = "filter-exception"
    NON_BOOL = "non-bool-result"
    TIMEOUT = "filter-timeout"
    CRASHED = "filter-crashed"  # the filter process died on this alert (a signal or an exit code)
    TOO_LARGE = "output-too-large"
    ORIGINAL_MISSING = "original-missing"  # an accepted lean alert whose original is gone (originals.py)


@dataclass(slots=True)
class Outcome:
    """What happened to one alert.

    Attributes:
        kind: see :class:`Kind`.
        reason: the :class:`Reason` when ``kind`` is ``error``, else ``""``.
        message: human-readable detail of an error.
        alert_id: the value at the id field, when the alert decoded and has one.
        visit: the visit id (an ``int`` or a ``str``), when read.
        filter_seconds: wall time of the filter call, s (0 when not called).
    """

    kind: Kind
    reason: Reason | str = ""
    message: str = ""
    alert_id: Any = None
    visit: Any = None
    filter_seconds: float = 0.0


class Filters(Protocol):
    """What the runner needs of the filter process (:class:`alertfilter.supervisor.FilterProcess`)."""

    def verdicts(
        self, values: Sequence[bytes | None], stop: threading.Event | None = None
    ) -> Generator[Outcome, None, None]:
        """Hand ``values`` to the filter process now; the iterator gives one outcome per value, in
        order, and stops early when ``stop`` is set.

        Raises:
            SchemaSourceError: the schema of the next value cannot be had now.
        """

    def close(self) -> None:
        """End the filter process."""
