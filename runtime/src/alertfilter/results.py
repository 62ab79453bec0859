"""What a filter may return: a ``bool`` (numpy's included), checked by :func:`check_result`."""

from __future__ import annotations

from typing import Any

from .texts import FILTER_ERRORS, describe_exception, safe_repr, type_name


class NonBoolResult(TypeError):
    """The filter returned something other than a bool (raised by :func:`check_result`)."""


def _is_numpy_bool(result: Any) -> bool:
    """numpy's boolean scalar (``numpy.bool_``; its type is named ``bool`` in numpy 2), without importing numpy."""
    cls = type(result)
    try:
        module = type.__dict__["__module__"].__get__(cls)
    except FILTER_ERRORS:
        return False
    return module == "numpy" and type_name(result) in ("bool", "bool_")


def check_result(result: Any) -> bool:
    """The filter's verdict as a bool.

    ``True`` and ``False`` are verdicts, and so are numpy's boolean scalars (``numpy.True_``, what
    ``numpy.isfinite(x)`` or ``numpy.float64(x) > 0`` return). Nothing else is: not 1, not None.

    Raises:
        NonBoolResult: (a ``TypeError``) when ``result`` is not a bool, or is a numpy boolean whose
            truth value cannot be read; the message names the type and shows a short repr (and never raises itself, even
            when the object's ``__repr__`` does).
    """
    if result is True or result is False:
        return result
    if _is_numpy_bool(result):
        try:
            verdict = bool(result)
        except FILTER_ERRORS as exc:
            raise NonBoolResult(
                f"filter returned {type_name(result)} {safe_repr(result)} whose truth value "
                f"cannot be read: {describe_exception(exc, 200)}"
            ) from None
        return verdict
    raise NonBoolResult(f"filter returned {type_name(result)} {safe_repr(result)}, not bool")
