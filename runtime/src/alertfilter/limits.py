"""Guards on what a filter forwards (``spec.limits``, issue #15).

- ``maxAcceptedPerDay``: accepted alerts forwarded per UTC day;
- ``maxBytesPerDay``: bytes of the accepted alerts forwarded per UTC day (their values, as forwarded);
- ``maxMatchRate``: the fraction of alerts the filter accepts over a window of
  :data:`DEFAULT_MATCH_WINDOW` (or ``--match-rate-window``, never fewer than :data:`MIN_MATCH_WINDOW`)
  consumed alerts, counted from the runner's start in consecutive windows.

Passing one stops forwarding for the rest of the UTC day (the per-day limits) or of the window (the
rate). The alerts are still consumed, counted (``limited``: the runner's totals and
``alertfilter_alerts_limited_total``) and their offsets committed, like capped ones: nothing is
replayed later, nothing is dead-lettered. A per-day limit trips when it is reached: the
``maxAcceptedPerDay``-th alert is forwarded, the next is not; an alert that would carry the day's
bytes past ``maxBytesPerDay`` is not forwarded (so the day never forwards more). The rate trips on the
alert that makes more than ``floor(maxMatchRate x window)`` of the window's alerts accepted (that
alert is not forwarded): the window's rate is then above the limit whatever comes next. The rate
counts every alert the filter accepts, capped or not.

The state (the day's counts, the window's, when each limit tripped) is small JSON kept with the
committed offsets (:meth:`LimitGuard.snapshot`, at most a few hundred bytes), so a restarted runner
keeps it; a new UTC day resets the per-day limits, the next window the rate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .limitspec import (
    DEFAULT_MATCH_WINDOW,
    LIMIT_NAMES,
    LIMIT_OPTIONS,
    MAX_ACCEPTED_PER_DAY,
    MAX_BYTES_PER_DAY,
    MAX_MATCH_RATE,
    MAX_MATCH_WINDOW,
    MIN_MATCH_WINDOW,
    Limits,
    match_rate,
)

__all__ = [
    "DEFAULT_MATCH_WINDOW",
    "LIMIT_NAMES",
    "LIMIT_OPTIONS",
    "MAX_ACCEPTED_PER_DAY",
    "MAX_BYTES_PER_DAY",
    "MAX_MATCH_RATE",
    "MAX_MATCH_WINDOW",
    "MIN_MATCH_WINDOW",
    "LimitGuard",
    "Limits",
    "clock_time",
    "match_rate",
    "utc_day",
]

log = logging.getLogger("alertfilter.runner")


def utc_day(t: float) -> str:
    """The UTC date of the Unix time ``t`` (s), ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")


def clock_time(t: float) -> str:
    """``HH:MM:SS`` of the Unix time ``t`` (s), UTC."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


@dataclass
class _State:
    """What a snapshot holds: the day's counts and trips (limit -> Unix time, s), and the window's."""

    day: str = ""
    accepted: int = 0
    bytes: int = 0
    tripped: dict[str, int] = field(default_factory=dict)
    figures: dict[str, int] = field(default_factory=dict)  # each trip's limit, to tell a changed one
    seq: int = 0  # windows completed before the current one
    seen: int = 0  # alerts of the current window so far
    matches: int = 0  # of them, accepted by the filter
    rate_tripped: int | None = None


class LimitGuard:
    """Applies :class:`Limits` to the alerts of one runner.

    The runner calls :meth:`count` for every consumed alert, then :meth:`admit` for each the filter
    accepted and the per-visit cap let through; :meth:`admit` says whether to forward it.

    Args:
        limits: the limits (``Limits()`` for none: the guard then admits everything).
        clock: the current Unix time, s (injected by tests to cross a UTC midnight).

    Attributes:
        on_trip: called with ``(limit, message)`` when a limit trips (metrics, a log line).
        on_limited: called with the limit that stopped an alert, for each alert not forwarded.
        trips, limited: how many times each limit tripped, alerts each stopped, in this process
            (never rolled back: counters).
    """

    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        self.on_trip: Callable[[str, str], None] | None = None
        self.on_limited: Callable[[str], None] | None = None
        self.trips: dict[str, int] = dict.fromkeys(LIMIT_NAMES, 0)
        self.limited: dict[str, int] = dict.fromkeys(LIMIT_NAMES, 0)
        rate = self.limits.max_match_rate
        #: Accepted alerts a window may have before the rate passes the limit (exact: no float rounding).
        self.match_allowed = math.floor(Fraction(repr(rate)) * self.limits.match_window) if rate is not None else None
        self._s = _State(day=utc_day(clock()))

    @property
    def active(self) -> bool:
        """True when a limit is set."""
        return self.limits.any

    # --- the hot path --------------------------------------------------------------------------
    def count(self, matched: bool) -> None:
        """Count one consumed alert in the match-rate window (``matched``: the filter accepted it)."""
        if self.match_allowed is None:
            return
        s, window = self._s, self.limits.match_window
        if s.seen >= window:  # the previous window is over: a new one, with forwarding back on
            s.seq, s.seen, s.matches, s.rate_tripped = s.seq + 1, 0, 0, None
        s.seen += 1
        if matched:
            s.matches += 1
            if s.matches > self.match_allowed and s.rate_tripped is None:
                s.rate_tripped = int(self.clock())
                self._trip(
                    MAX_MATCH_RATE,
                    f"{MAX_MATCH_RATE} {self.limits.max_match_rate:g} passed at {clock_time(s.rate_tripped)} UTC: "
                    f"{s.matches} of the {s.seen} alerts of the window so far accepted (at most "
                    f"{self.match_allowed} of {window}); forwarding resumes after the window's other "
                    f"{window - s.seen} alerts",
                )

    def admit(self, size: int | None) -> bool:
        """Whether to forward an accepted alert of ``size`` bytes (its value); counted when True.
        False when a limit stops it (``on_limited`` is told which). ``size`` None: the bytes
        forwarded are not known yet (a lean alert, whose original is forwarded at the batch's end):
        :meth:`admit_original` counts them then."""
        if not self.active:
            return True
        lim, s = self.limits, self._s
        now = self.clock()
        self._roll(now)
        blocked = self._blocking(now, size or 0)
        if blocked is not None:
            self._limit(blocked)
            return False
        s.accepted += 1
        if lim.max_accepted_per_day is not None and s.accepted >= lim.max_accepted_per_day:
            self._trip_day(MAX_ACCEPTED_PER_DAY, now, f"{MAX_ACCEPTED_PER_DAY} {lim.max_accepted_per_day} reached")
        return size is None or self._add_bytes(now, size)

    def admit_original(self, size: int) -> bool:
        """The original of a lean alert admitted by ``admit(None)``, ``size`` bytes, is about to be
        forwarded: False (the alert then uncounted, and limited) when it would carry the day's bytes
        past maxBytesPerDay."""
        if self.limits.max_bytes_per_day is None:
            return True
        now = self.clock()
        self._roll(now)
        if MAX_BYTES_PER_DAY in self._s.tripped or not self._add_bytes(now, size):
            self._s.accepted = max(0, self._s.accepted - 1)
            self._limit(MAX_BYTES_PER_DAY)
            return False
        return True

    def gate(self, sink: Any) -> Any:
        """``sink`` (anything with ``forward(m, outcome)`` and ``totals``) whose forwards of lean
        alerts' originals pass :meth:`admit_original` first; ``sink`` itself without maxBytesPerDay."""
        return _OriginalsGate(self, sink) if self.limits.max_bytes_per_day is not None else sink

    def _add_bytes(self, now: float, size: int) -> bool:
        """Count ``size`` forwarded bytes; False, and the limit tripped, when they would pass it."""
        lim, s = self.limits, self._s
        if lim.max_bytes_per_day is None:
            return True
        if s.bytes + size > lim.max_bytes_per_day:
            self._trip_day(
                MAX_BYTES_PER_DAY,
                now,
                f"{MAX_BYTES_PER_DAY} {lim.max_bytes_per_day} reached ({s.bytes} bytes forwarded today; the next "
                f"accepted alert, {size} bytes, would pass it)",
            )
            return False
        s.bytes += size
        if s.bytes >= lim.max_bytes_per_day:
            self._trip_day(MAX_BYTES_PER_DAY, now, f"{MAX_BYTES_PER_DAY} {lim.max_bytes_per_day} reached")
        return True

    def _limit(self, name: str) -> None:
        self.limited[name] += 1
        if self.on_limited is not None:
            self.on_limited(name)

    def _blocking(self, now: float, size: int) -> str | None:
        """The limit that stops an alert of ``size`` bytes now, or None (trips the bytes limit when
        the alert would pass it)."""
        lim, s = self.limits, self._s
        if s.rate_tripped is not None:  # this alert, counted last, is of the tripped window (its last one too)
            return MAX_MATCH_RATE
        for name in (MAX_ACCEPTED_PER_DAY, MAX_BYTES_PER_DAY):
            if name in s.tripped:
                return name
        if lim.max_accepted_per_day is not None and s.accepted >= lim.max_accepted_per_day:  # a lowered limit
            self._trip_day(MAX_ACCEPTED_PER_DAY, now, f"{MAX_ACCEPTED_PER_DAY} {lim.max_accepted_per_day} reached")
            return MAX_ACCEPTED_PER_DAY
        if lim.max_bytes_per_day is not None and s.bytes + size > lim.max_bytes_per_day:
            self._add_bytes(now, size)  # trips it
            return MAX_BYTES_PER_DAY
        return None

    def _roll(self, now: float) -> None:
        """A new UTC day: the per-day counts and trips start again."""
        day = utc_day(now)
        if day != self._s.day:
            s = self._s
            s.day, s.accepted, s.bytes, s.tripped = day, 0, 0, {}

    def _trip_day(self, name: str, now: float, what: str) -> None:
        self._s.tripped[name] = int(now)
        self._s.figures[name] = int(self.limits.value(name) or 0)
        self._trip(name, f"{what} at {clock_time(now)} UTC; forwarding resumes at 00:00 UTC")

    def _trip(self, name: str, message: str) -> None:
        self.trips[name] += 1
        log.warning("%s; the accepted alerts meanwhile are counted as limited, not forwarded", message)
        if self.on_trip is not None:
            self.on_trip(name, message)

    # --- what /metrics and the operator read ---------------------------------------------------
    def limited_now(self, name: str) -> bool:
        """True while the limit ``name`` stops forwarding (read-only: safe from the metrics thread;
        a per-day limit of an earlier UTC day reads False before the next alert resets it)."""
        s = self._s
        if name == MAX_MATCH_RATE:
            return s.rate_tripped is not None and s.seen < self.limits.match_window
        return name in s.tripped and s.day == utc_day(self.clock())

    def tripped_at(self, name: str) -> int | None:
        """When the limit ``name`` tripped (Unix time, s) while it stops forwarding, else None."""
        if not self.limited_now(name):
            return None
        return self._s.rate_tripped if name == MAX_MATCH_RATE else self._s.tripped.get(name)

    # --- checkpoints: the committed offsets' metadata ------------------------------------------
    def snapshot(self) -> dict[str, Any] | None:
        """The state as a small JSON-able dict (about 150 bytes as JSON); None when no limit is set."""
        if not self.active:
            return None
        s = self._s
        out: dict[str, Any] = {"day": s.day, "accepted": s.accepted, "bytes": s.bytes}
        if s.tripped:
            out["tripped"] = {name: [t, s.figures.get(name, 0)] for name, t in s.tripped.items()}
        if self.match_allowed is not None:
            out["window"] = [s.seq, s.seen, s.matches, s.rate_tripped]
        return out

    def rollback(self, snapshot: dict[str, Any] | None) -> None:
        """Return to ``snapshot`` exactly (from :meth:`snapshot`; None: nothing to return to)."""
        if snapshot is not None and self.active:
            state = _parse(snapshot)
            if state is not None:
                self._s = state
                self._recheck()

    def restore(self, snapshots: Iterable[Any]) -> None:
        """Merge the snapshots of several partitions' committed metadata (dicts from :meth:`snapshot`;
        anything else is ignored): those of today give the largest counts and the earliest trip of
        each limit (an earlier day's are over); the window is the most advanced one."""
        if not self.active:
            return
        now = self.clock()
        self._roll(now)
        today = utc_day(now)
        for state in (_parse(x) for x in snapshots):
            if state is None:
                continue
            s = self._s
            if state.day == today:
                s.day = today
                s.accepted, s.bytes = max(s.accepted, state.accepted), max(s.bytes, state.bytes)
                for name, t in state.tripped.items():
                    s.tripped[name] = min(s.tripped.get(name, t), t)
                    s.figures[name] = state.figures.get(name, 0)
            if (state.seq, state.seen) > (s.seq, s.seen):
                s.seq, s.seen, s.matches, s.rate_tripped = state.seq, state.seen, state.matches, state.rate_tripped
        self._recheck()

    def _recheck(self) -> None:
        """After a restore: keep only the trips the limits as set now still justify (a runner
        restarted with a raised limit forwards again; a trip under the same limit stands)."""
        s, lim = self._s, self.limits
        for name, figure, used in (
            (MAX_ACCEPTED_PER_DAY, lim.max_accepted_per_day, s.accepted),
            (MAX_BYTES_PER_DAY, lim.max_bytes_per_day, s.bytes),
        ):
            if name in s.tripped and s.figures.get(name) != figure:
                if figure is None or used < figure:
                    del s.tripped[name]
                    s.figures.pop(name, None)
                else:
                    s.figures[name] = figure
        if s.rate_tripped is not None and (self.match_allowed is None or s.matches <= self.match_allowed):
            s.rate_tripped = None

    def status(self) -> dict[str, Any]:
        """Each set limit as the operator reads it (the runner's status document, value ``limits``):
        ``{limit: {"value": figure, "limited": bool, "trippedAt": Unix s or None}}``, and
        ``"window"`` (alerts) for maxMatchRate."""
        out: dict[str, Any] = {}
        for name in LIMIT_NAMES:
            if self.limits.value(name) is not None:
                out[name] = {
                    "value": self.limits.value(name),
                    "limited": self.limited_now(name),
                    "trippedAt": self.tripped_at(name),
                }
        if MAX_MATCH_RATE in out:
            out[MAX_MATCH_RATE]["window"] = self.limits.match_window
        return out


def _count(x: Any) -> int | None:
    """``x`` when it is a non-negative int (not a bool), else None."""
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None


def _parse(data: Any) -> _State | None:
    """A snapshot dict as a :class:`_State`; None when it is not one (another format, a forgery)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, dict) or not isinstance(data.get("day"), str) or len(data["day"]) != 10:
        return None
    accepted, size = _count(data.get("accepted")), _count(data.get("bytes"))
    if accepted is None or size is None:
        return None
    state = _State(day=data["day"], accepted=accepted, bytes=size)
    tripped = data.get("tripped") or {}
    if isinstance(tripped, dict):
        for name, trip in tripped.items():
            if name in LIMIT_NAMES[:2] and isinstance(trip, list) and len(trip) == 2:
                t, figure = _count(trip[0]), _count(trip[1])
                if t is not None and figure is not None:
                    state.tripped[name], state.figures[name] = t, figure
    window = data.get("window")
    if isinstance(window, list) and len(window) == 4 and all(_count(x) is not None for x in window[:3]):
        state.seq, state.seen, state.matches = window[:3]
        state.rate_tripped = _count(window[3])
    return state


class _OriginalsGate:
    """A sink whose ``forward`` counts the bytes of lean alerts' originals against maxBytesPerDay."""

    def __init__(self, guard: LimitGuard, sink: Any) -> None:
        self._guard, self._sink = guard, sink

    def forward(self, m: Any, oc: Any) -> None:
        if self._guard.admit_original(len(m.value() or b"")):
            self._sink.forward(m, oc)
        else:
            self._sink.totals["limited"] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)
