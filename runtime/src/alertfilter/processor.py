"""Per-alert decision: decode, filter (within a time budget), cap. No Kafka here.

:meth:`AlertProcessor.process` turns one message value into an :class:`Outcome`. The filter
process (``filterproc.py``, with no cap: the runner caps) and ``alertfilter check`` share it, so
the offline backtest and the stream give the same answers.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from .api import (
    FILTER_ERRORS,
    LoadedFilter,
    NonBoolResult,
    a_or_an,
    check_result,
    describe_exception,
    safe_repr,
    type_name,
)
from .cap import VisitCap
from .codecs import DecodeError, Decoder
from .fields import DEFAULT_ID_FIELD, DEFAULT_VISIT_FIELD, MissingField, get_field, parse_path
from .outcome import Kind, Outcome, Reason

# Short names of the kinds and reasons, as the devstack's demo and the tests import them.
ACCEPTED, REJECTED, CAPPED, ERROR = Kind.ACCEPTED, Kind.REJECTED, Kind.CAPPED, Kind.ERROR
REASON_DECODE = Reason.DECODE
REASON_MISSING_VISIT = Reason.MISSING_VISIT
REASON_INVALID_VISIT = Reason.INVALID_VISIT
REASON_FILTER_EXCEPTION = Reason.FILTER_EXCEPTION
REASON_NON_BOOL = Reason.NON_BOOL
REASON_TIMEOUT = Reason.TIMEOUT


class FilterTimeout(BaseException):
    """Raised inside a filter call that exceeds its time budget.

    A ``BaseException`` so that a filter's own ``except Exception`` cannot swallow it.
    """


#: True only while a filter call's time budget runs: an alarm that fires just after the call
#: returned (its signal handler runs a few bytecodes later) must not raise outside the call.
_alarm_armed = False
#: Set when the budget of the current call ran out, even if the filter swallowed the FilterTimeout
#: (``except BaseException``): the call is then a timeout whatever it returns.
_alarm_fired = False


def _on_alarm(signum: int, frame: Any) -> None:
    global _alarm_fired
    if _alarm_armed:
        _alarm_fired = True
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

    def __init__(
        self,
        flt: LoadedFilter,
        decoder: Decoder,
        cap: VisitCap,
        visit_field: str = DEFAULT_VISIT_FIELD,
        id_field: str = DEFAULT_ID_FIELD,
        filter_timeout_s: float | None = 1.0,
    ) -> None:
        self.filter = flt
        self.decoder = decoder
        self.cap = cap
        self.visit_field = visit_field
        self.visit_path = parse_path(visit_field)
        self.id_path = parse_path(id_field)
        self.filter_timeout_s = filter_timeout_s or 0.0
        self._use_alarm = self.filter_timeout_s > 0 and threading.current_thread() is threading.main_thread()
        if self._use_alarm:
            signal.signal(signal.SIGALRM, _on_alarm)
        self._clock: Callable[[], float] = time.perf_counter
        #: Called with the alert id just before each filter call (the filter process tells the runner).
        self.on_filter_start: Callable[[Any], None] | None = None

    def _call_filter(self, alert: dict[str, Any]) -> bool:
        """The filter's verdict, read within the time budget (``__bool__`` of what it returns included)."""
        global _alarm_armed, _alarm_fired
        if not self._use_alarm:
            return check_result(self.filter.func(alert))
        _alarm_fired = False
        _alarm_armed = True
        signal.setitimer(signal.ITIMER_REAL, self.filter_timeout_s)
        try:
            verdict = check_result(self.filter.func(alert))
        finally:
            _alarm_armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        if _alarm_fired:  # the filter caught the FilterTimeout and went on: still over budget
            raise FilterTimeout()
        return verdict

    def _timeout(self, alert_id: Any, visit: Any, t0: float) -> Outcome:
        return Outcome(
            ERROR,
            REASON_TIMEOUT,
            f"filter call exceeded its budget of {self.filter_timeout_s:g} s",
            alert_id,
            visit,
            self._clock() - t0,
        )

    def process(self, value: bytes | memoryview | None) -> Outcome:
        """Decode, filter and cap one message value. Never raises for bad input.

        Raises:
            SchemaSourceError: the message's schema cannot be had now (a malformed schema, an
                unreachable registry): not the message's fault, so no outcome is given for it.
        """
        try:
            alert = self.decoder.decode(value)
        except DecodeError as exc:
            return Outcome(ERROR, REASON_DECODE, str(exc))
        return self.process_alert(alert)

    def process_alert(self, alert: dict[str, Any]) -> Outcome:
        """Filter and cap one decoded alert. Never raises: whatever the filter raises (``sys.exit()``
        and ``KeyboardInterrupt`` included) or returns, and whatever the visit field holds, is an
        :class:`Outcome` (an error one when it must be)."""
        try:
            alert_id = get_field(alert, self.id_path, allow_null=True)
        except MissingField:
            alert_id = None
        try:
            visit = get_field(alert, self.visit_path)
        except MissingField as exc:
            return Outcome(ERROR, REASON_MISSING_VISIT, str(exc), alert_id)
        if isinstance(visit, bool) or not isinstance(visit, (int, str)):
            return Outcome(
                ERROR,
                REASON_INVALID_VISIT,
                f"the visit field {self.visit_field} holds {a_or_an(type_name(visit))} "
                f"{safe_repr(visit, 60)}, not an integer or a string: the per-visit cap cannot count it",
                alert_id,
            )
        if self.on_filter_start is not None:
            self.on_filter_start(alert_id)
        t0 = self._clock()
        try:
            accepted = self._call_filter(alert)
        except FilterTimeout:
            return self._timeout(alert_id, visit, t0)
        except NonBoolResult as exc:
            if self._use_alarm and _alarm_fired:
                return self._timeout(alert_id, visit, t0)
            return Outcome(ERROR, REASON_NON_BOOL, str(exc), alert_id, visit, self._clock() - t0)
        except FILTER_ERRORS as exc:  # a filter may raise anything, sys.exit() included; the loop goes on
            if self._use_alarm and _alarm_fired:  # it caught the FilterTimeout and raised something else
                return self._timeout(alert_id, visit, t0)
            return Outcome(ERROR, REASON_FILTER_EXCEPTION, describe_exception(exc), alert_id, visit, self._clock() - t0)
        dt = self._clock() - t0
        if not accepted:
            return Outcome(REJECTED, alert_id=alert_id, visit=visit, filter_seconds=dt)
        if not self.cap.admit(visit):
            return Outcome(CAPPED, alert_id=alert_id, visit=visit, filter_seconds=dt)
        return Outcome(ACCEPTED, alert_id=alert_id, visit=visit, filter_seconds=dt)
