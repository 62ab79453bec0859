"""Text about objects a filter controls, that never raises: their type's name, a cut ``repr``/``str``,
an exception's one-line description. A filter's objects may break ``__repr__``, ``__str__`` or even
``__name__``; messages about them must still be written.
"""

from __future__ import annotations

from typing import Any

#: What the runtime catches around code a filter controls (its module body, ``__init__``, ``filter``,
#: and the ``__repr__``/``__str__``/``__bool__`` of what it returns or raises): every exception a
#: filter can raise, ``sys.exit()`` and a stray ``KeyboardInterrupt`` or ``GeneratorExit`` included.
#: The runner's own time-budget exception (``processor.FilterTimeout``) is deliberately not here.
FILTER_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit, GeneratorExit, KeyboardInterrupt)


def type_name(obj: Any) -> str:
    """The name of ``obj``'s type, even when a metaclass makes ``__name__`` misbehave."""
    cls = type(obj)
    try:
        name = type.__dict__["__name__"].__get__(cls)
        return name if isinstance(name, str) else "object"
    except FILTER_ERRORS:
        return "object"


def a_or_an(word: str) -> str:
    """``"an int"``, ``"a dict"``: the indefinite article and ``word``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _safe_text(convert: Any, obj: Any, limit: int) -> str:
    try:
        text = convert(obj)
        if not isinstance(text, str):
            raise TypeError
    except FILTER_ERRORS:
        return f"<{type_name(obj)} object>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def safe_repr(obj: Any, limit: int = 80) -> str:
    """``repr(obj)`` cut to ``limit`` characters; never raises (``<T object>`` when ``__repr__`` fails)."""
    return _safe_text(repr, obj, limit)


def safe_str(obj: Any, limit: int = 1000) -> str:
    """``str(obj)`` cut to ``limit`` characters; never raises (``<T object>`` when ``__str__`` fails)."""
    return _safe_text(str, obj, limit)


def describe_exception(exc: BaseException, limit: int = 1000) -> str:
    """``"TypeName: message"`` (or just the type name when the message is empty); never raises."""
    text = safe_str(exc, limit)
    name = type_name(exc)
    return f"{name}: {text}"[:limit] if text else name
