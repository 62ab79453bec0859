"""Per-alert decision: decode, filter (within a time budget), cap. No Kafka here.

:meth:`AlertProcessor.process` turns one message value into an :class:`Outcome`. The runner
(``runner.py``) and ``alertfilter check`` share it, so the offline backtest and the stream give
the same answers.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .api import LoadedFilter, check_result
from .cap import VisitCap
from .codecs import DecodeError, Decoder
from .fields import MissingField, get_field, parse_path

# Outcome kinds
ACCEPTED = "accepted"
REJECTED = "rejected"
CAPPED = "capped"
ERROR = "error"

# Error reasons: the value of the dead-letter header ``alertfilter.error.reason`` and of the
# ``reason`` label of ``alertfilter_errors_total``.
REASON_DECODE = "decode-error"
REASON_MISSING_VISIT = "missing-visit-field"
REASON_FILTER_EXCEPTION = "filter-exception"
REASON_NON_BOOL = "non-bool-result"
REASON_TIMEOUT = "filter-timeout"
REASON_TOO_LARGE = "output-too-large"
REASONS = (REASON_DECODE, REASON_MISSING_VISIT, REASON_FILTER_EXCEPTION, REASON_NON_BOOL, REASON_TIMEOUT,
           REASON_TOO_LARGE)


class FilterTimeout(BaseException):
    """Raised inside a filter call that exceeds its time budget.

    A ``BaseException`` so that a filter's own ``except Exception`` cannot swallow it.
    """


@dataclass(slots=True)
class Outcome:
    """What happened to one alert.

    Attributes:
        kind: ``accepted``, ``rejected`` (the filter said no), ``capped`` (the filter said yes but
            its visit already had N accepted alerts) or ``error``.
        reason: one of :data:`REASONS` when ``kind == "error"``.
        message: human-readable detail of an error.
        alert_id: the value at the id field, when the alert decoded and has one.
        visit: the visit id, when read.
        filter_seconds: wall time of the filter call, s (0 when not called).
    """

    kind: str
    reason: str = ""
    message: str = ""
    alert_id: Any = None
    visit: Any = None
    filter_seconds: float = 0.0


def _on_alarm(signum: int, frame: Any) -> None:
    raise FilterTimeout()


class AlertProcessor:
    """Decides the fate of each alert for one filter.

    Args:
        flt: the loaded filter.
        decoder: decodes message values.
        cap: the per-visit cap (``VisitCap(None)`` for no cap).
        visit_field: dotted path of the visit id (default ``diaSource.visit``).
        id_field: dotted path of the alert id used in logs and outputs (default ``diaSourceId``).
        filter_timeout_s: per-alert time budget of the filter call, s; 0 or None for none. Enforced
            with SIGALRM, so only when the processor runs in the main thread.
    """

    def __init__(self, flt: LoadedFilter, decoder: Decoder, cap: VisitCap, visit_field: str = "diaSource.visit",
                 id_field: str = "diaSourceId", filter_timeout_s: float | None = 1.0) -> None:
        self.filter = flt
        self.decoder = decoder
        self.cap = cap
        self.visit_path = parse_path(visit_field)
        self.id_path = parse_path(id_field)
        self.filter_timeout_s = filter_timeout_s or 0.0
        self._use_alarm = self.filter_timeout_s > 0 and threading.current_thread() is threading.main_thread()
        if self._use_alarm:
            signal.signal(signal.SIGALRM, _on_alarm)
        self._clock: Callable[[], float] = time.perf_counter

    def _call_filter(self, alert: dict[str, Any]) -> Any:
        if not self._use_alarm:
            return self.filter.func(alert)
        signal.setitimer(signal.ITIMER_REAL, self.filter_timeout_s)
        try:
            return self.filter.func(alert)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def process(self, value: bytes | None) -> Outcome:
        """Decode, filter and cap one message value. Never raises for bad input."""
        try:
            alert = self.decoder.decode(value)
        except DecodeError as exc:
            return Outcome(ERROR, REASON_DECODE, str(exc))
        return self.process_alert(alert)

    def process_alert(self, alert: dict[str, Any]) -> Outcome:
        """Filter and cap one decoded alert. Never raises for bad input."""
        try:
            alert_id = get_field(alert, self.id_path, allow_null=True)
        except MissingField:
            alert_id = None
        try:
            visit = get_field(alert, self.visit_path)
        except MissingField as exc:
            return Outcome(ERROR, REASON_MISSING_VISIT, str(exc), alert_id)
        t0 = self._clock()
        try:
            result = self._call_filter(alert)
        except FilterTimeout:
            dt = self._clock() - t0
            return Outcome(ERROR, REASON_TIMEOUT, f"filter call exceeded its budget of {self.filter_timeout_s:g} s",
                           alert_id, visit, dt)
        except Exception as exc:  # noqa: BLE001 - a filter may raise anything; the loop goes on
            dt = self._clock() - t0
            return Outcome(ERROR, REASON_FILTER_EXCEPTION, f"{type(exc).__name__}: {exc}"[:1000], alert_id, visit, dt)
        dt = self._clock() - t0
        try:
            accepted = check_result(result)
        except TypeError as exc:
            return Outcome(ERROR, REASON_NON_BOOL, str(exc), alert_id, visit, dt)
        if not accepted:
            return Outcome(REJECTED, alert_id=alert_id, visit=visit, filter_seconds=dt)
        if not self.cap.admit(visit):
            return Outcome(CAPPED, alert_id=alert_id, visit=visit, filter_seconds=dt)
        return Outcome(ACCEPTED, alert_id=alert_id, visit=visit, filter_seconds=dt)
