"""The filter source, read without running it: its errors (:class:`FilterSourceError`, with line and
column), its hash, :func:`choose_entrypoint`, the one rule that decides which definition is the
filter (``load_filter`` applies it to the loaded module, :func:`check_source` to what the source
may bind), and :func:`check_source`, for the operator and its admission webhook, which must never
run a filter.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .bindings import ABSENT, CLASS, FILTER_CLASS, FUNCTION, Bindings, Kind, read_bindings

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


def parse_source(source: str) -> ast.Module:
    """The AST of ``source`` (compiled too, so that every compile-time error shows here).

    Raises:
        FilterSourceError: a syntax error, a null byte (at its own line and column), a source too
            deeply nested or too large to compile, or another invalid character.
    """
    nul = source.find("\0")
    if nul >= 0:
        line = source.count("\n", 0, nul) + 1
        column = nul - (source.rfind("\n", 0, nul) + 1) + 1
        raise FilterSourceError("the source contains a null byte (\\x00); remove it", line, column)
    try:
        tree = ast.parse(source, filename=FILTER_FILENAME)
        compile(tree, FILTER_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise FilterSourceError(f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1) from None
    except (RecursionError, MemoryError) as exc:
        raise FilterSourceError(
            f"the source is too deeply nested or too large to compile ({type(exc).__name__}); simplify the expression"
        ) from None
    except ValueError as exc:  # e.g. lone surrogates in the source
        raise FilterSourceError(f"invalid source: {exc}") from None
    return tree


@dataclass(frozen=True)
class SourceCheck:
    """What :func:`check_source` found: the entrypoint's name and style (``class`` or ``function``;
    ``""`` for both when only loading the module can tell which definition is the filter)."""

    name: str
    style: str
    source_sha256: str


def positions(bindings: Bindings) -> dict[str, tuple[int, int]]:
    """Line and column (1-based) of the statement that last binds each top-level name."""
    out: dict[str, tuple[int, int]] = {}
    for name, b in bindings.names.items():
        if b.nodes:
            node = b.nodes[-1]
            out[name] = (node.lineno, node.col_offset + 1)
    return out


def choose_entrypoint(
    kinds: Mapping[str, frozenset[Kind]],
    where: Mapping[str, tuple[int, int]],
    entrypoint: str | None,
    dynamic: bool = False,
) -> str | None:
    """Which top-level name is the filter: the one rule for the webhook, the operator, ``check`` and the runner.

    With ``entrypoint``, that name (when it is bound). Otherwise the classes deriving from
    AlertFilter are the candidates, or, when there are none, the public functions; exactly one
    candidate must remain.

    Args:
        kinds: per top-level name, the kinds it may hold (see :mod:`alertfilter.bindings`): one kind
            each for a loaded module, several where a static reading cannot tell.
        where: line and column of each name's definition, for the errors.
        entrypoint: the name asked for, or None.
        dynamic: the namespace may hold names ``kinds`` does not list.

    Returns:
        The filter's name, or None when only running the module can tell (never for a loaded module).

    Raises:
        FilterSourceError: the entrypoint is not defined, no candidate, or several candidates.
    """

    def possible(k: Kind, public: bool) -> tuple[list[str], list[str]]:
        names = [n for n, ks in kinds.items() if k in ks and not (public and n.startswith("_"))]
        sure = [n for n in names if kinds[n] == {k}]
        return sure, [n for n in names if n not in sure]

    classes, maybe_classes = possible(FILTER_CLASS, public=False)
    functions, maybe_functions = possible(FUNCTION, public=True)
    if entrypoint:
        ks = kinds.get(entrypoint, frozenset({ABSENT}))
        if ks == {ABSENT} and not dynamic:
            known = ", ".join(sorted(classes) + sorted(functions)) or "nothing callable"
            raise FilterSourceError(f"entrypoint {entrypoint!r} is not defined; the source defines {known}")
        return None if ABSENT in ks or dynamic else entrypoint

    def several(names: list[str]) -> FilterSourceError:
        ordered = sorted(names, key=lambda n: where.get(n, (0, 0)))
        line, col = where.get(ordered[1], (1, 1))
        return FilterSourceError(
            f"several filters defined ({', '.join(ordered)}); name one as the entrypoint", line, col
        )

    if len(classes) > 1:
        raise several(classes)
    if classes or maybe_classes or dynamic:
        return classes[0] if classes and not maybe_classes and not dynamic else None
    if len(functions) > 1:
        raise several(functions)
    if functions or maybe_functions:
        return functions[0] if functions and not maybe_functions else None
    raise FilterSourceError(
        "no filter found: define a class deriving from AlertFilter or a function taking one argument (the alert)"
    )


def _positional_arity(args: ast.arguments, skip_self: bool) -> tuple[int, int, bool]:
    positional = [*args.posonlyargs, *args.args][1 if skip_self else 0 :]
    required = len(positional) - len(args.defaults)
    required_kwonly = sum(1 for d in args.kw_defaults if d is None)
    return max(required, 0) + required_kwonly, len(positional), args.vararg is not None


def _one_alert(args: ast.arguments, skip_self: bool) -> bool:
    required, total, varargs = _positional_arity(args, skip_self)
    return required <= 1 and (total >= 1 or varargs)


def _plain_def(node: ast.stmt | None) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.decorator_list:
        return node
    return None


def _check_function(name: str, node: ast.stmt | None) -> None:
    """The rules of a function filter that its definition shows (a decorated one may be anything)."""
    fn = _plain_def(node)
    if fn is not None:
        if isinstance(fn, ast.AsyncFunctionDef):
            raise FilterSourceError(f"{name} must be a plain def, not async def", fn.lineno, fn.col_offset + 1)
        if not _one_alert(fn.args, skip_self=False):
            raise FilterSourceError(f"{name} must take exactly one argument (the alert)", fn.lineno, fn.col_offset + 1)
    elif (
        isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Lambda)
        and not _one_alert(node.value.args, skip_self=False)
    ):
        raise FilterSourceError(f"{name} must take exactly one argument (the alert)", node.lineno, node.col_offset + 1)


def _class_members(cls: ast.ClassDef) -> dict[str, ast.stmt | None] | None:
    """The class body's names and their one plain binding (None: bound some other way); None when
    the body binds names conditionally."""
    out: dict[str, ast.stmt | None] = {}
    for s in cls.body:
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef):
            out[s.name] = s if not s.decorator_list else None
        elif isinstance(s, ast.ClassDef):
            out[s.name] = None
        elif isinstance(s, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Import | ast.ImportFrom | ast.Delete):
            for n in ast.walk(s):
                if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
                    out[n.id] = None
                elif isinstance(n, ast.alias):
                    out[n.asname or n.name.split(".")[0]] = None
        elif not isinstance(s, ast.Expr | ast.Pass):
            return None
    return out


def _check_class(name: str, cls: ast.ClassDef, bindings: Bindings, depth: int = 0) -> None:
    """The rules of a class filter that its definition (and its bases' here) shows."""
    members = _class_members(cls)
    if members is None or depth > 20:
        return
    where = (cls.lineno, cls.col_offset + 1)
    if "filter" in members:
        flt = _plain_def(members["filter"])
        if flt is not None and isinstance(flt, ast.AsyncFunctionDef):
            raise FilterSourceError(f"{name}.filter must be a plain def, not async def", flt.lineno, flt.col_offset + 1)
        if flt is not None and not _one_alert(flt.args, skip_self=True):
            raise FilterSourceError(
                f"{name}.filter must take exactly one argument besides self (the alert)",
                flt.lineno,
                flt.col_offset + 1,
            )
    elif len(cls.bases) == 1:
        base = cls.bases[0]
        base_binding = bindings.get(base.id) if isinstance(base, ast.Name) else None
        if (isinstance(base, ast.Attribute) and base.attr == "AlertFilter") or (
            base_binding is not None and base_binding.is_alertfilter
        ):
            raise FilterSourceError(f"class {name!r} does not define filter(self, alert)", *where)
        if base_binding is not None and base_binding.certain and isinstance(base_binding.node, ast.ClassDef):
            _check_class(name, base_binding.node, bindings, depth + 1)
    init = _plain_def(members.get("__init__"))
    if init is not None and _positional_arity(init.args, skip_self=True)[0] > 0:
        raise FilterSourceError(
            f"{name}.__init__ must take no arguments besides self: the runtime creates the filter without any",
            init.lineno,
            init.col_offset + 1,
        )


def check_source(source: str, entrypoint: str | None = None) -> SourceCheck:
    """Validate filter ``source`` without running any of it (for the operator and its webhook).

    Rejects what loading the filter would reject for sure (:func:`choose_entrypoint` on what the
    source may bind, then the entrypoint's own definition): a syntax error, no filter, several,
    an entrypoint the source does not define, a filter that cannot take exactly one alert, an
    ``async def``, a class that does not define ``filter``. Where only running the module can tell
    (a definition inside an ``if``, a decorator, a base class imported from elsewhere, ``exec``...)
    it accepts, and the runner reports what loading finds (an ``ImportError``, say).

    Returns:
        :class:`SourceCheck`; ``name`` is ``""`` when only loading can tell which of several names
        is the filter, ``style`` ``""`` when only loading can tell what it holds.

    Raises:
        FilterSourceError: with line and column.
    """
    if not isinstance(source, str) or not source.strip():
        raise FilterSourceError("the filter source is empty")
    digest = source_sha256(source)
    tree = parse_source(source.removeprefix("\ufeff"))
    bindings = read_bindings(tree)
    kinds = {n: b.kinds for n, b in bindings.names.items()}
    name = choose_entrypoint(kinds, positions(bindings), entrypoint or None, bindings.dynamic)
    if name is None:
        possible = [n for n, ks in kinds.items() if FILTER_CLASS in ks or (FUNCTION in ks and not n.startswith("_"))]
        if entrypoint or bindings.dynamic or len(possible) != 1:
            return SourceCheck(entrypoint or "", "", digest)
        name = possible[0]  # the only name that can be the filter, if loading finds it defined
    b = bindings.get(name)
    if b.kinds == {CLASS} and isinstance(b.node, ast.ClassDef):
        node = b.node
        raise FilterSourceError(f"class {name!r} does not derive from AlertFilter", node.lineno, node.col_offset + 1)
    if b.kinds == {FILTER_CLASS}:
        if b.certain and isinstance(b.node, ast.ClassDef):
            _check_class(name, b.node, bindings)
        return SourceCheck(name, "class", digest)
    if b.kinds == {FUNCTION}:
        if b.certain:
            _check_function(name, b.node)
        return SourceCheck(name, "function", digest)
    return SourceCheck(name, "class" if b.kinds <= {FILTER_CLASS, CLASS} else "", digest)
