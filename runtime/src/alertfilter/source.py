"""The filter source, read without running it: its errors (:class:`FilterSourceError`, with line and
column), its hash, and :func:`check_source`, the rules of ``load_filter`` that can be checked
statically (for the operator and its admission webhook, which must never run a filter).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from typing import Any

#: The file name a filter's code is compiled under (it shows in its tracebacks).
FILTER_FILENAME = "<filter>"


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


def source_sha256(source: str) -> str:
    """Hex sha256 of ``source`` encoded as UTF-8."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


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
