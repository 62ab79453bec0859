"""The limits as they are set (``spec.limits``, ``alertfilter run --max-...``): their names, bounds
and options, and :class:`Limits`; :mod:`alertfilter.limits` applies them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .convert import SettingError, int_in

#: The limits, as ``spec.limits`` names them (also the ``limit`` label of their metrics).
MAX_ACCEPTED_PER_DAY = "maxAcceptedPerDay"
MAX_BYTES_PER_DAY = "maxBytesPerDay"
MAX_MATCH_RATE = "maxMatchRate"
LIMIT_NAMES = (MAX_ACCEPTED_PER_DAY, MAX_BYTES_PER_DAY, MAX_MATCH_RATE)
#: The fewest alerts a match-rate window may have: a rate over fewer says little of a filter.
MIN_MATCH_WINDOW = 1000
#: Alerts of a match-rate window, by default.
DEFAULT_MATCH_WINDOW = MIN_MATCH_WINDOW
#: The most alerts a window may have (a bound on the option, not a figure anyone needs).
MAX_MATCH_WINDOW = 100_000_000


def match_rate(text: str) -> float:
    """A converter: a fraction ``0 < rate <= 1``.

    Raises:
        SettingError: anything else.
    """
    try:
        value = float(str(text).strip())
    except ValueError:
        raise SettingError(f"expected a fraction of the alerts, e.g. 0.05, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise SettingError(f"must be more than 0 and at most 1 (a fraction of the alerts), got {text!r}")
    return value


match_rate.__name__ = "fraction"

#: ``alertfilter run`` options of the limits, ``(name, help, default, converter)``: settings.py makes
#: them :class:`~alertfilter.settings.Option` rows (kept here so the limits are described in one place).
LIMIT_OPTIONS: tuple[tuple[str, str, Any, Callable[[str], Any]], ...] = (
    (
        "max-accepted-per-day",
        (
            "stop forwarding for the rest of the UTC day once N accepted alerts were forwarded that day; "
            "the alerts past it are counted as limited and their offsets committed (default: no limit)"
        ),
        None,
        int_in(1),
    ),
    (
        "max-bytes-per-day",
        (
            "stop forwarding for the rest of the UTC day rather than pass N bytes of accepted alerts "
            "forwarded that day (default: no limit)"
        ),
        None,
        int_in(1),
    ),
    (
        "max-match-rate",
        (
            "stop forwarding for the rest of the window once more than this fraction (0 < r <= 1) of a "
            "window's alerts were accepted (default: no limit)"
        ),
        None,
        match_rate,
    ),
    (
        "match-rate-window",
        f"alerts of a --max-match-rate window (at least {MIN_MATCH_WINDOW})",
        DEFAULT_MATCH_WINDOW,
        int_in(MIN_MATCH_WINDOW, MAX_MATCH_WINDOW),
    ),
)


@dataclass(frozen=True)
class Limits:
    """The limits of one runner; None for no limit.

    Attributes:
        max_accepted_per_day: accepted alerts forwarded per UTC day (>= 1).
        max_bytes_per_day: bytes of accepted alerts (their values) forwarded per UTC day (>= 1).
        max_match_rate: fraction of a window's alerts the filter may accept, ``0 < r <= 1``.
        match_window: alerts of a window (>= :data:`MIN_MATCH_WINDOW`).

    Raises:
        ValueError: a value out of those bounds.
    """

    max_accepted_per_day: int | None = None
    max_bytes_per_day: int | None = None
    max_match_rate: float | None = None
    match_window: int = DEFAULT_MATCH_WINDOW

    def __post_init__(self) -> None:
        for name in ("max_accepted_per_day", "max_bytes_per_day"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.max_match_rate is not None:
            match_rate(str(self.max_match_rate))
        if self.match_window < MIN_MATCH_WINDOW:
            raise ValueError(f"match_window must be at least {MIN_MATCH_WINDOW} alerts, got {self.match_window}")

    @property
    def any(self) -> bool:
        """True when at least one limit is set."""
        return any(v is not None for v in (self.max_accepted_per_day, self.max_bytes_per_day, self.max_match_rate))

    def value(self, name: str) -> int | float | None:
        """The figure of the limit ``name`` (one of :data:`LIMIT_NAMES`)."""
        return {
            MAX_ACCEPTED_PER_DAY: self.max_accepted_per_day,
            MAX_BYTES_PER_DAY: self.max_bytes_per_day,
            MAX_MATCH_RATE: self.max_match_rate,
        }[name]
