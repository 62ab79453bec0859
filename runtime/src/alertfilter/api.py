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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FILTER_FILENAME = "<filter>"

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
    try:
        tree = ast.parse(source, filename=FILTER_FILENAME)
        code = compile(tree, FILTER_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise FilterSourceError(f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1) from None
    except (RecursionError, MemoryError) as exc:
        raise FilterSourceError(
            f"the source is too deeply nested or too large to compile ({type(exc).__name__}); simplify the expression"
        ) from None
    except ValueError as exc:  # e.g. null bytes or lone surrogates in the source
        raise FilterSourceError(f"invalid source: {safe_str(exc)}") from None
    return tree, code


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

    classes = {
        n: o
        for n, o in namespace.items()
        if inspect.isclass(o) and defined_here(o) and issubclass(o, AlertFilter) and o is not AlertFilter
    }
    functions = {
        n: o for n, o in namespace.items() if inspect.isfunction(o) and defined_here(o) and not n.startswith("_")
    }

    if entrypoint is not None:
        obj = namespace.get(entrypoint)
        if obj is None:
            known = ", ".join(sorted(classes) + sorted(functions)) or "nothing callable"
            raise FilterSourceError(f"entrypoint {entrypoint!r} is not defined; the source defines {known}")
        name = entrypoint
    else:
        candidates = classes or functions
        if not candidates:
            raise FilterSourceError(
                "no filter found: define a class deriving from AlertFilter "
                "or a function taking one argument (the alert)"
            )
        if len(candidates) > 1:
            names = sorted(candidates, key=lambda n: where.get(n, (0, 0)))
            line, col = where.get(names[1], (1, 1))
            raise FilterSourceError(
                f"several filters defined ({', '.join(names)}); name one as the entrypoint", line, col
            )
        name, obj = next(iter(candidates.items()))
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


@dataclass(frozen=True)
class SourceCheck:
    """What :func:`check_source` found: the entrypoint's name and style (``class`` or ``function``)."""

    name: str
    style: str
    source_sha256: str


def _positional_arity(args: ast.arguments, skip_self: bool) -> tuple[int, int, bool]:
    positional = [*args.posonlyargs, *args.args][1 if skip_self else 0 :]
    required = len(positional) - len(args.defaults)
    required_kwonly = sum(1 for d in args.kw_defaults if d is None)
    return max(required, 0) + required_kwonly, len(positional), args.vararg is not None


def _one_alert(args: ast.arguments, skip_self: bool) -> bool:
    required, total, varargs = _positional_arity(args, skip_self)
    return required <= 1 and (total >= 1 or varargs)


def check_source(source: str, entrypoint: str | None = None) -> SourceCheck:
    """Validate filter ``source`` without running any of it (for the operator and its webhook).

    Applies the rules of :func:`load_filter` that can be checked statically: the source compiles;
    it defines a class deriving from ``AlertFilter`` or a public top-level function; the entrypoint
    exists and there is no ambiguity; ``filter`` (or the function) takes exactly one alert
    argument; no ``async def`` entrypoint. Errors that only running the module body can show
    (an ``ImportError``, say) are reported by the runner when it loads the filter.

    Raises:
        FilterSourceError: with line and column.
    """
    if not isinstance(source, str) or not source.strip():
        raise FilterSourceError("the filter source is empty")
    try:
        tree = ast.parse(source, filename=FILTER_FILENAME)
        compile(tree, FILTER_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise FilterSourceError(f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1) from None
    except ValueError as exc:
        raise FilterSourceError(f"invalid source: {exc}") from None
    digest = source_sha256(source)

    def base_name(b: ast.expr) -> str | None:
        if isinstance(b, ast.Name):
            return b.id
        if isinstance(b, ast.Attribute):
            return b.attr
        return None

    classes: dict[str, ast.ClassDef] = {}
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    assigned: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            if any(base_name(b) in ({"AlertFilter"} | set(classes)) for b in node.bases):
                classes[node.name] = node
            else:
                classes.pop(node.name, None)
            functions.pop(node.name, None)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not node.name.startswith("_"):
                functions[node.name] = node
            classes.pop(node.name, None)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    assigned.add(t.id)
                    classes.pop(t.id, None)
                    functions.pop(t.id, None)
    if entrypoint:
        if entrypoint in classes or entrypoint in functions:
            name = entrypoint
        elif entrypoint in assigned:
            return SourceCheck(entrypoint, "function", digest)  # built at run time; the runner checks it
        else:
            known = ", ".join(sorted(classes) + sorted(functions)) or "nothing callable"
            raise FilterSourceError(f"entrypoint {entrypoint!r} is not defined; the source defines {known}")
    else:
        candidates = classes or functions
        if not candidates:
            raise FilterSourceError(
                "no filter found: define a class deriving from AlertFilter "
                "or a function taking one argument (the alert)"
            )
        if len(candidates) > 1:
            nodes = sorted(candidates.values(), key=lambda n: n.lineno)
            raise FilterSourceError(
                f"several filters defined ({', '.join(n.name for n in nodes)}); name one as the entrypoint",
                nodes[1].lineno,
                nodes[1].col_offset + 1,
            )
        name = next(iter(candidates))
    if name in classes:
        cls = classes[name]
        methods = {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        flt = methods.get("filter")
        inherited = any(base_name(b) in classes for b in cls.bases)
        if flt is None and not inherited:
            raise FilterSourceError(
                f"class {name!r} does not define filter(self, alert)", cls.lineno, cls.col_offset + 1
            )
        if flt is not None:
            if isinstance(flt, ast.AsyncFunctionDef):
                raise FilterSourceError(
                    f"{name}.filter must be a plain def, not async def", flt.lineno, flt.col_offset + 1
                )
            if not _one_alert(flt.args, skip_self=True):
                raise FilterSourceError(
                    f"{name}.filter must take exactly one argument besides self (the alert)",
                    flt.lineno,
                    flt.col_offset + 1,
                )
        init = methods.get("__init__")
        if init is not None and _positional_arity(init.args, skip_self=True)[0] > 0:
            raise FilterSourceError(
                f"{name}.__init__ must take no arguments besides self: the runtime creates the filter without any",
                init.lineno,
                init.col_offset + 1,
            )
        return SourceCheck(name, "class", digest)
    fn = functions[name]
    if isinstance(fn, ast.AsyncFunctionDef):
        raise FilterSourceError(f"{name} must be a plain def, not async def", fn.lineno, fn.col_offset + 1)
    if not _one_alert(fn.args, skip_self=False):
        raise FilterSourceError(f"{name} must take exactly one argument (the alert)", fn.lineno, fn.col_offset + 1)
    return SourceCheck(name, "function", digest)


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


__all__ = [
    "FILTER_ERRORS",
    "AlertFilter",
    "FilterSourceError",
    "LoadedFilter",
    "NonBoolResult",
    "SourceCheck",
    "check_result",
    "check_source",
    "describe_exception",
    "load_filter",
    "safe_repr",
    "safe_str",
    "source_sha256",
    "type_name",
]
