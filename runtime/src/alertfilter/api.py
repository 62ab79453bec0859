"""The filter API: what a filter author writes, and how its source is compiled.

A filter is Python source that defines either

- a class deriving from :class:`AlertFilter` that overrides ``filter(self, alert) -> bool``
  (the style of the original LSST mini-broker design, DMTN-028), or
- a plain function ``def my_filter(alert) -> bool``.

An *alert* is the plain ``dict`` that Avro decoding gives: nested dicts for records, lists for
arrays, ``bytes`` for cutouts, ``None`` for nulls, floats that may be NaN. The runtime never
changes it before the filter sees it.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import traceback
from dataclasses import dataclass
from typing import Any, Callable

FILTER_FILENAME = "<filter>"


class AlertFilter:
    """Base class of class-style filters.

    Subclass it and override :meth:`filter`. The runtime creates one instance (no arguments) when
    the filter is loaded and calls ``filter`` once per alert; attributes set in ``__init__`` last
    for the life of the runner.
    """

    def filter(self, alert: dict[str, Any]) -> bool:
        """Return True to forward ``alert`` to the filter's output topic."""
        raise NotImplementedError("override filter(self, alert) -> bool")


class FilterSourceError(ValueError):
    """The filter source cannot be used.

    Attributes:
        line: 1-based line in the source the problem is at.
        column: 1-based column (1 when only the line is known).
        message: what is wrong, in words a filter author can act on.
    """

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        self.message = message
        self.line = int(line or 1)
        self.column = int(column or 1)
        super().__init__(f"line {self.line}, column {self.column}: {message}")

    def as_dict(self) -> dict[str, Any]:
        """``{"line": int, "column": int, "message": str}``, for status conditions and JSON output."""
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class LoadedFilter:
    """A compiled filter, ready to call.

    Attributes:
        name: the entrypoint's name (class or function).
        func: ``func(alert) -> bool``; the bound ``filter`` method for class-style filters.
        source_sha256: hex sha256 of the UTF-8 source, the provenance recorded on outputs.
        style: ``"class"`` or ``"function"``.
    """

    name: str
    func: Callable[[dict[str, Any]], Any]
    source_sha256: str
    style: str

    def __call__(self, alert: dict[str, Any]) -> Any:
        return self.func(alert)


def source_sha256(source: str) -> str:
    """Hex sha256 of ``source`` encoded as UTF-8."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _where(tree: ast.Module) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = (node.lineno, node.col_offset + 1)
    return out


def _line_in_source(exc: BaseException) -> int:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == FILTER_FILENAME and frame.lineno:
            return frame.lineno
    return 1


def _accepts_one_alert(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind({})
        return True
    except TypeError:
        return False
    except ValueError:  # no signature (builtins): let it be called
        return True


def load_filter(source: str, entrypoint: str | None = None) -> LoadedFilter:
    """Compile filter ``source`` and return the filter as a callable.

    Args:
        source: Python source text (for example ``spec.source`` of an AlertFilter resource).
        entrypoint: name of the class or function to use when the source defines several.

    Returns:
        A :class:`LoadedFilter`; call it with an alert dict.

    Raises:
        FilterSourceError: with line and column, for a syntax error, an error raised while the
            module body runs, no filter defined, a missing ``entrypoint``, several candidates and no
            ``entrypoint``, a class that does not override ``filter`` or cannot be created without
            arguments, or a filter that cannot be called with exactly one argument (the alert).
    """
    if not isinstance(source, str) or not source.strip():
        raise FilterSourceError("the filter source is empty")
    try:
        tree = ast.parse(source, filename=FILTER_FILENAME)
        code = compile(tree, FILTER_FILENAME, "exec")
    except SyntaxError as exc:
        raise FilterSourceError(f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1) from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise FilterSourceError(f"invalid source: {exc}") from None
    where = _where(tree)
    module_name = "alertfilter_user_filter"
    namespace: dict[str, Any] = {"__name__": module_name, "__file__": FILTER_FILENAME, "__builtins__": __builtins__}
    try:
        exec(code, namespace)  # noqa: S102 - running the author's filter is this function's job
    except Exception as exc:  # noqa: BLE001 - any error in the module body is the author's to fix
        raise FilterSourceError(f"the source raised {type(exc).__name__} when loaded: {exc}",
                                _line_in_source(exc)) from None

    def defined_here(obj: Any) -> bool:
        return getattr(obj, "__module__", None) == module_name

    classes = {n: o for n, o in namespace.items()
               if inspect.isclass(o) and defined_here(o) and issubclass(o, AlertFilter) and o is not AlertFilter}
    functions = {n: o for n, o in namespace.items()
                 if inspect.isfunction(o) and defined_here(o) and not n.startswith("_")}

    if entrypoint:
        obj = namespace.get(entrypoint)
        if obj is None:
            known = ", ".join(sorted(classes) + sorted(functions)) or "nothing callable"
            raise FilterSourceError(f"entrypoint {entrypoint!r} is not defined; the source defines {known}")
        name = entrypoint
    else:
        candidates = classes or functions
        if not candidates:
            raise FilterSourceError("no filter found: define a class deriving from AlertFilter "
                                    "or a function taking one argument (the alert)")
        if len(candidates) > 1:
            names = sorted(candidates, key=lambda n: where.get(n, (0, 0)))
            line, col = where.get(names[1], (1, 1))
            raise FilterSourceError(f"several filters defined ({', '.join(names)}); name one as the entrypoint",
                                    line, col)
        name, obj = next(iter(candidates.items()))
    line, col = where.get(name, (1, 1))
    digest = source_sha256(source)

    if inspect.isclass(obj):
        if not issubclass(obj, AlertFilter):
            raise FilterSourceError(f"class {name!r} does not derive from AlertFilter", line, col)
        if obj.filter is AlertFilter.filter:
            raise FilterSourceError(f"class {name!r} does not define filter(self, alert)", line, col)
        try:
            instance = obj()
        except Exception as exc:  # noqa: BLE001
            raise FilterSourceError(f"{name}() failed: {type(exc).__name__}: {exc}",
                                    _line_in_source(exc) if _line_in_source(exc) > 1 else line, col) from None
        func = instance.filter
        if not _accepts_one_alert(func):
            fline = getattr(getattr(obj.filter, "__code__", None), "co_firstlineno", line)
            raise FilterSourceError(f"{name}.filter must take exactly one argument besides self (the alert); "
                                    f"it is filter{inspect.signature(obj.filter)}", fline, 1)
        return LoadedFilter(name, func, digest, "class")
    if callable(obj):
        if not _accepts_one_alert(obj):
            sig = ""
            try:
                sig = str(inspect.signature(obj))
            except (TypeError, ValueError):
                pass
            raise FilterSourceError(f"{name} must take exactly one argument (the alert); it is {name}{sig}", line, col)
        return LoadedFilter(name, obj, digest, "function")
    raise FilterSourceError(f"entrypoint {name!r} is a {type(obj).__name__}, not a class or function", line, col)


def check_result(result: Any) -> bool:
    """The filter's verdict as a bool.

    Raises:
        TypeError: when ``result`` is not a ``bool`` (numpy's ``bool_`` counts as one).
    """
    if result is True or result is False:
        return result
    if type(result).__name__ == "bool_":  # numpy.bool_, without importing numpy
        return bool(result)
    raise TypeError(f"filter returned {type(result).__name__} {result!r:.80}, not bool")


__all__ = ["AlertFilter", "FilterSourceError", "LoadedFilter", "load_filter", "check_result", "source_sha256"]
