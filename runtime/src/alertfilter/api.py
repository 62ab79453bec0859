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
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bindings import CLASS, FILTER_CLASS, FUNCTION, OTHER, Kind, read_bindings
from .imports import ImportRef, describe_missing, missing_imports, read_imports, runner_modules
from .results import NonBoolResult, check_result
from .source import (
    FILTER_FILENAME,
    FilterSourceError,
    SourceCheck,
    check_source,
    choose_entrypoint,
    parse_source,
    positions,
    source_sha256,
)
from .texts import FILTER_ERRORS, a_or_an, describe_exception, safe_repr, safe_str, type_name

__all__ = [
    "FILTER_ERRORS",
    "FILTER_FILENAME",
    "AlertFilter",
    "FilterSourceError",
    "ImportRef",
    "LoadedFilter",
    "NonBoolResult",
    "SourceCheck",
    "a_or_an",
    "check_result",
    "check_source",
    "describe_exception",
    "describe_missing",
    "load_filter",
    "missing_imports",
    "parse_source",
    "read_imports",
    "runner_modules",
    "safe_repr",
    "safe_str",
    "source_sha256",
    "type_name",
]


class AlertFilter:
    """Base class of class-style filters.

    Subclass it and override :meth:`filter`. The runtime creates one instance (no arguments) when
    the filter is loaded and calls ``filter`` once per alert; attributes set in ``__init__`` last
    for the life of the runner.
    """

    def filter(self, alert: dict[str, Any]) -> bool:
        """Return True to forward ``alert`` to the filter's output topic."""
        raise NotImplementedError("override filter(self, alert) -> bool")


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


def _where(tree: ast.Module) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = (node.lineno, node.col_offset + 1)
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{sub.name}"] = (sub.lineno, sub.col_offset + 1)
                elif isinstance(sub, (ast.Assign, ast.AnnAssign)):
                    for t in sub.targets if isinstance(sub, ast.Assign) else [sub.target]:
                        if isinstance(t, ast.Name):
                            out[f"{node.name}.{t.id}"] = (sub.lineno, sub.col_offset + 1)
    return out


def _line_in_source(exc: BaseException) -> int:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == FILTER_FILENAME and frame.lineno:
            return frame.lineno
    return 1


def _accepts_one_alert(func: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(func)
    except ValueError:  # no signature (builtins): let it be called
        return True
    except TypeError:
        return False
    try:
        sig.bind({})
        return True
    except TypeError:
        return False


def _compile(source: str) -> tuple[ast.Module, Any]:
    """Parse and compile ``source``; every failure is a :class:`FilterSourceError`."""
    tree = parse_source(source)
    return tree, compile(tree, FILTER_FILENAME, "exec", dont_inherit=True)


def load_filter(source: str, entrypoint: str | None = None) -> LoadedFilter:
    """Compile filter ``source`` and return the filter as a callable.

    A UTF-8 byte-order mark at the start of the source is ignored, as Python ignores it in a file.

    Args:
        source: Python source text (for example ``spec.source`` of an AlertFilter resource).
        entrypoint: name of the class or function to use when the source defines several; None
            to pick the only candidate. An empty name is an error.

    Returns:
        A :class:`LoadedFilter`; call it with an alert dict.

    Raises:
        FilterSourceError: with line and column, for a syntax error, a source too deeply nested to
            compile, anything raised while the module body runs (``sys.exit()`` and
            ``KeyboardInterrupt`` included), no filter defined, an empty or missing ``entrypoint``,
            several candidates and no ``entrypoint``, a class that does not override ``filter`` or
            cannot be created without arguments, a ``filter`` attribute that is not a method, or a
            filter that cannot be called with exactly one argument (the alert). Never any other
            exception type.
    """
    if not isinstance(source, str) or not source.strip():
        raise FilterSourceError("the filter source is empty")
    if entrypoint is not None and not entrypoint.strip():
        raise FilterSourceError("empty entrypoint: name a class or function the source defines, or give none")
    try:
        return _load(source, entrypoint)
    except FilterSourceError:
        raise
    except FILTER_ERRORS as exc:  # anything the checks below did not foresee is still the source's problem
        raise FilterSourceError(
            f"the filter cannot be loaded: {describe_exception(exc, 300)}", _line_in_source(exc)
        ) from None


def _load(original: str, entrypoint: str | None) -> LoadedFilter:
    source = original.removeprefix("\ufeff")  # a BOM, as an editor may save it; Python ignores it in a file
    if not source.strip():
        raise FilterSourceError("the filter source is empty")
    tree, code = _compile(source)
    digest = source_sha256(original)
    where = _where(tree)
    module_name = "alertfilter_user_filter"
    namespace: dict[str, Any] = {"__name__": module_name, "__file__": FILTER_FILENAME, "__builtins__": __builtins__}
    try:
        exec(code, namespace)  # noqa: S102 - running the author's filter is this function's job
    except FILTER_ERRORS as exc:  # any error in the module body, sys.exit() included, is the author's to fix
        raise FilterSourceError(
            f"the source raised {describe_exception(exc, 300)} when loaded", _line_in_source(exc)
        ) from None

    def defined_here(obj: Any) -> bool:
        return getattr(obj, "__module__", None) == module_name

    def kind(obj: Any) -> Kind:
        if inspect.isclass(obj) and defined_here(obj):
            return FILTER_CLASS if issubclass(obj, AlertFilter) and obj is not AlertFilter else CLASS
        return FUNCTION if inspect.isfunction(obj) and defined_here(obj) else OTHER

    # the rule check_source applies statically, here to what the module really holds
    kinds = {n: frozenset({kind(o)}) for n, o in namespace.items() if not n.startswith("__")}
    name = choose_entrypoint(kinds, {**positions(read_bindings(tree)), **where}, entrypoint)
    assert name is not None  # a loaded module leaves no doubt
    obj = namespace[name]
    line, col = where.get(name, (1, 1))

    if inspect.isclass(obj):
        if not issubclass(obj, AlertFilter):
            raise FilterSourceError(f"class {name!r} does not derive from AlertFilter", line, col)
        fline, fcol = where.get(f"{name}.filter", (line, col))
        declared = inspect.getattr_static(obj, "filter", None)
        if declared is AlertFilter.filter:
            raise FilterSourceError(f"class {name!r} does not define filter(self, alert)", line, col)
        try:
            instance = obj()
        except FILTER_ERRORS as exc:
            raise FilterSourceError(
                f"{name}() failed: {describe_exception(exc, 300)}",
                _line_in_source(exc) if _line_in_source(exc) > 1 else line,
                col,
            ) from None
        try:
            func = instance.filter
        except FILTER_ERRORS as exc:
            raise FilterSourceError(
                f"reading {name}.filter raised {describe_exception(exc, 300)}",
                _line_in_source(exc) if _line_in_source(exc) > 1 else fline,
                fcol,
            ) from None
        if not callable(func):
            raise FilterSourceError(
                f"{name}.filter is {a_or_an(type_name(func))}, not a method filter(self, alert)", fline, fcol
            )
        if inspect.iscoroutinefunction(func):
            raise FilterSourceError(f"{name}.filter must be a plain def, not async def", fline, fcol)
        if not _accepts_one_alert(func):
            raise FilterSourceError(
                f"{name}.filter must take exactly one argument besides self (the alert); "
                f"it is filter{_signature(declared)}",
                fline,
                fcol,
            )
        return LoadedFilter(name, func, digest, "class")
    if inspect.iscoroutinefunction(obj):
        raise FilterSourceError(f"{name} must be a plain def, not async def", line, col)
    if callable(obj):
        if not _accepts_one_alert(obj):
            raise FilterSourceError(
                f"{name} must take exactly one argument (the alert); it is {name}{_signature(obj)}", line, col
            )
        return LoadedFilter(name, obj, digest, "function")
    raise FilterSourceError(f"entrypoint {name!r} is {a_or_an(type_name(obj))}, not a class or function", line, col)


def _signature(obj: Any) -> str:
    """``"(self, a)"``, or ``""`` when Python cannot tell."""
    try:
        return str(inspect.signature(obj))
    except FILTER_ERRORS:
        return ""
