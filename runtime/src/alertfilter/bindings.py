"""What each top-level name of a filter source may hold once its module body has run, read from the
AST without running anything (for the admission webhook, ``check_source`` and field inference).

The answer is a set of possible :data:`Kind` values per name, conservative: when the source could
bind a name in a way this reading cannot follow (a ``def`` inside an ``if``, a decorator, a call
that may build a function, ``globals()``, ``exec``, a ``global`` statement...), every kind the
running module could give is in the set. :func:`alertfilter.source.choose_entrypoint` decides from
these sets, and from the real namespace when the filter is loaded, with the same rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: ``filter_class``: a class defined here deriving from AlertFilter; ``class``: another class defined
#: here; ``function``: a function (``def`` or ``lambda``) defined here; ``other``: anything else (a
#: number, an imported module or function, ...); ``absent``: the name is not bound.
Kind = str
FILTER_CLASS, CLASS, FUNCTION, OTHER, ABSENT = "filter_class", "class", "function", "other", "absent"
ANY: frozenset[Kind] = frozenset({FILTER_CLASS, CLASS, FUNCTION, OTHER})

#: Names whose use means the module's namespace may be changed in ways no static reading follows.
DYNAMIC_NAMES = frozenset(
    {"globals", "vars", "locals", "exec", "eval", "compile", "setattr", "delattr", "__import__", "__builtins__"}
)
DYNAMIC_ATTRS = frozenset({"__dict__", "modules", "__globals__", "__setattr__", "f_globals", "__code__"})
#: Builtins that return neither a class nor a function defined in the filter's module.
_PLAIN_BUILTINS = frozenset(
    {"int", "float", "str", "bytes", "bool", "len", "abs", "min", "max", "round", "sum", "range", "list", "dict"}
    | {"set", "frozenset", "tuple", "sorted", "print", "repr", "hash", "isinstance", "object", "complex", "divmod"}
)


@dataclass
class Binding:
    """What one top-level name may hold.

    Attributes:
        kinds: the possible kinds (one element: known for sure).
        nodes: the statements that may have bound it last (a ``def``, ``class`` or assignment).
        is_alertfilter: the name is ``AlertFilter`` itself (imported or aliased), for sure.
    """

    kinds: frozenset[Kind]
    nodes: list[ast.stmt] = field(default_factory=list)
    is_alertfilter: bool = False

    @property
    def certain(self) -> bool:
        """True when the name is bound by one known statement to one known kind."""
        return len(self.kinds) == 1 and len(self.nodes) == 1

    @property
    def node(self) -> ast.stmt | None:
        """The one statement that binds the name, when there is only one."""
        return self.nodes[0] if len(self.nodes) == 1 else None


@dataclass
class Bindings:
    """The top-level names of a source; ``dynamic``: the namespace may change in unseen ways (then
    every name not listed may be bound to anything too)."""

    names: dict[str, Binding]
    dynamic: bool

    def get(self, name: str) -> Binding:
        """The binding of ``name`` (absent, or anything when the namespace is dynamic)."""
        b = self.names.get(name)
        if b is None:
            return Binding(ANY | {ABSENT}) if self.dynamic else Binding(frozenset({ABSENT}))
        if self.dynamic:
            return Binding(b.kinds | ANY, b.nodes)
        return b


def _is_dynamic(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DYNAMIC_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRS:
            return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (a.name.split(".")[0] in ("importlib", "builtins", "inspect", "ctypes")) for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "importlib",
            "builtins",
            "inspect",
            "ctypes",
        ):
            return True
    return False


class _Reader:
    """Follows the module body in order, binding names as running it would."""

    def __init__(self) -> None:
        self.names: dict[str, Binding] = {}

    def kinds_of_base(self, base: ast.expr) -> frozenset[Kind] | None:
        """Whether a base makes a class a filter class: {True}, {False}, or both possible (None)."""
        if isinstance(base, ast.Name):
            b = self.names.get(base.id)
            if b is None:
                return frozenset({CLASS}) if base.id in _PLAIN_BUILTINS or base.id == "Exception" else None
            if b.is_alertfilter:
                return frozenset({FILTER_CLASS})
            if b.kinds == {FILTER_CLASS}:
                return frozenset({FILTER_CLASS})
            if b.kinds <= {CLASS}:
                return frozenset({CLASS})
            return None
        if isinstance(base, ast.Attribute) and base.attr == "AlertFilter":
            return frozenset({FILTER_CLASS})
        return None

    def value_kinds(self, value: ast.expr) -> tuple[frozenset[Kind], bool]:
        """The kinds an assigned value may have, and whether it is AlertFilter itself."""
        if isinstance(value, ast.Lambda):
            return frozenset({FUNCTION}), False
        if isinstance(value, ast.Name):
            b = self.names.get(value.id)
            if b is None:
                return (frozenset({OTHER}), False) if value.id in _PLAIN_BUILTINS else (ANY, False)
            return b.kinds - {ABSENT} or frozenset({OTHER}), b.is_alertfilter
        if isinstance(value, ast.Attribute) and value.attr == "AlertFilter":
            return frozenset({OTHER}), True
        if isinstance(value, ast.Call):
            return (frozenset({OTHER}), False) if self._plain_call(value) else (ANY, False)
        if any(isinstance(n, ast.Lambda | ast.Call | ast.Name | ast.Attribute) for n in ast.walk(value)):
            return ANY, False  # a conditional expression, a subscript...: could be anything
        return frozenset({OTHER}), False  # literals and arithmetic on them

    def _plain_call(self, call: ast.Call) -> bool:
        """True when ``call`` cannot return a class or function defined here: an imported module's
        function or a plain builtin, given nothing defined here (nor AlertFilter)."""
        root: ast.expr = call.func
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name):
            return False
        b = self.names.get(root.id)
        if b is None:
            if not (root is call.func and root.id in _PLAIN_BUILTINS):
                return False
        elif b.kinds != {OTHER} or b.is_alertfilter:
            return False
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            for n in ast.walk(arg):
                if isinstance(n, ast.Lambda | ast.Call):
                    return False
                if isinstance(n, ast.Name):
                    nb = self.names.get(n.id)
                    if nb is None or nb.kinds != {OTHER} or nb.is_alertfilter:
                        return False
        return True

    def bind(self, name: str, kinds: frozenset[Kind], node: ast.stmt, maybe: bool, is_af: bool = False) -> None:
        if maybe:
            prev = self.names.get(name, Binding(frozenset({ABSENT})))
            self.names[name] = Binding(prev.kinds | kinds, [*prev.nodes, node], False)
        else:
            self.names[name] = Binding(kinds, [node], is_af)

    def targets(self, target: ast.expr, node: ast.stmt, maybe: bool) -> None:
        for n in ast.walk(target):
            if isinstance(n, ast.Name):
                self.bind(n.id, ANY, node, maybe)

    def body(self, stmts: Iterable[ast.stmt], maybe: bool) -> None:
        for s in stmts:
            self.stmt(s, maybe)

    def stmt(self, s: ast.stmt, maybe: bool) -> None:
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef):
            self.bind(s.name, ANY if s.decorator_list else frozenset({FUNCTION}), s, maybe)
        elif isinstance(s, ast.ClassDef):
            if s.decorator_list or s.keywords:
                self.bind(s.name, ANY, s, maybe)
            else:
                found = [self.kinds_of_base(b) for b in s.bases]
                if any(k is not None and FILTER_CLASS in k for k in found):
                    kinds = frozenset({FILTER_CLASS})
                elif any(k is None for k in found):
                    kinds = frozenset({FILTER_CLASS, CLASS})
                else:
                    kinds = frozenset({CLASS})
                self.bind(s.name, kinds, s, maybe)
        elif isinstance(s, ast.Import | ast.ImportFrom):
            for a in s.names:
                name = a.asname or a.name.split(".")[0]
                is_af = isinstance(s, ast.ImportFrom) and a.name == "AlertFilter"
                self.bind(name, frozenset({OTHER}), s, maybe, is_af)
        elif isinstance(s, ast.Assign | ast.AnnAssign):
            value = s.value
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]
            if value is None:
                return  # a bare annotation binds nothing
            kinds, is_af = self.value_kinds(value)
            for t in targets:
                if isinstance(t, ast.Name):
                    self.bind(t.id, kinds, s, maybe, is_af)
                else:
                    self.targets(t, s, True)
            self.walrus(value, s)
        elif isinstance(s, ast.AugAssign):
            self.targets(s.target, s, maybe)
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                if isinstance(t, ast.Name):
                    self.bind(t.id, frozenset({ABSENT}), s, maybe)
        elif isinstance(s, ast.If | ast.While):
            self.walrus(s.test, s)
            self.body(s.body, True)
            self.body(s.orelse, True)
        elif isinstance(s, ast.For | ast.AsyncFor):
            self.targets(s.target, s, True)
            self.body(s.body, True)
            self.body(s.orelse, True)
        elif isinstance(s, ast.With | ast.AsyncWith):
            for item in s.items:
                if item.optional_vars is not None:
                    self.targets(item.optional_vars, s, True)
            self.body(s.body, True)
        elif isinstance(s, ast.Try | ast.TryStar):
            self.body(s.body, True)
            for h in s.handlers:
                if h.name:
                    self.bind(h.name, ANY | {ABSENT}, s, True)
                self.body(h.body, True)
            self.body(s.orelse, True)
            self.body(s.finalbody, maybe)
        elif isinstance(s, ast.Match):
            for case in s.cases:
                for n in ast.walk(case.pattern):
                    bound: Any = getattr(n, "name", None) or getattr(n, "rest", None)
                    if isinstance(bound, str):
                        self.bind(bound, ANY, s, True)
                self.body(case.body, True)
        else:
            self.walrus(s, s)

    def walrus(self, tree: ast.AST, stmt: ast.stmt) -> None:
        """``(name := value)`` outside a function binds a module-level name."""
        for n in ast.walk(tree):
            if isinstance(n, ast.NamedExpr) and isinstance(n.target, ast.Name):
                self.bind(n.target.id, ANY, stmt, True)


def read_bindings(tree: ast.Module) -> Bindings:
    """The top-level names ``tree`` binds and what each may hold (see the module's docstring)."""
    reader = _Reader()
    reader.body(tree.body, False)
    for node in ast.walk(tree):  # a function that declares a name global may rebind it when called
        if isinstance(node, ast.Global):
            for name in node.names:
                reader.bind(name, ANY, node, True)
    return Bindings(reader.names, _is_dynamic(tree))
