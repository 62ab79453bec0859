"""Converters from text (an option's value, an environment variable) to a setting's value; each
raises :class:`SettingError` with what is wrong, in the words the CLI shows after ``argument --x:``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .fields import parse_path

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingError(ValueError):
    """A value an option refuses; ``str()`` says why (the CLI shows it as ``argument --x: ...``)."""


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` → True, ``0/false/no/off`` → False (any case).

    Raises:
        SettingError: anything else.
    """
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SettingError(f"expected 1, true, yes or on (or 0, false, no, off), got {text!r}")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """A converter: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""

    def convert(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise SettingError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise SettingError(f"must be {bounds}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


def seconds(allow_zero: bool = True) -> Callable[[str], float]:
    """A converter: a finite number of seconds, >= 0 (> 0 when ``allow_zero`` is False)."""

    def convert(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise SettingError(f"expected a number of seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise SettingError(f"must be a finite number of seconds {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return value

    convert.__name__ = "seconds"
    return convert


def field_path(text: str) -> str:
    """A converter: a dotted field path such as ``diaSource.visit``."""
    try:
        parse_path(text)
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    return text


def lower(text: str) -> str:
    """A converter: the text in lower case."""
    return text.lower()
