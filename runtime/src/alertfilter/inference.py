"""Which fields a filter reads, from its source: :func:`infer_fields` (used by projected decoding,
:mod:`alertfilter.projection`). Conservative: any doubt gives None, and everything is decoded.

Besides ``alert["name"]`` and ``alert.get("name", ...)``, two uses of a history array are read
closer: ``alert.history("name", "field", ...)`` (numpy columns: ``name[field]``, nothing of it
decoded into dicts), and a loop or comprehension over ``alert["name"]`` whose variable is only ever read
as ``item["field"]`` or ``item.get("field", ...)`` inside it (``name.field`` for each field read);
``alert["name"] or []`` counts as ``alert["name"]`` there.
"""

from __future__ import annotations

import ast

from .bindings import read_bindings


# --- which fields does a filter read? --------------------------------------------------------------
def _alert_param(fn: ast.FunctionDef, method: bool) -> str | None:
    args = [*fn.args.posonlyargs, *fn.args.args][1 if method else 0 :]
    return args[0].arg if args else None


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _item_reads(roots: list[ast.AST], var: str) -> dict[int, str]:
    """``id(Name node) -> field`` for each ``var["field"]`` / ``var.get("field"...)`` under ``roots``."""
    reads: dict[int, str] = {}
    for root in roots:
        for n in ast.walk(root):
            if isinstance(n, ast.Subscript) and _is_name(n.value, var) and isinstance(n.ctx, ast.Load):
                key = _literal(n.slice)
                if key is not None:
                    reads[id(n.value)] = key
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and _is_name(n.func.value, var):
                key = _literal(n.args[0]) if n.func.attr == "get" and n.args else None
                if key is not None:
                    reads[id(n.func.value)] = key
    return reads


def _item_loops(fn: ast.FunctionDef, param: str) -> dict[int, set[str]]:
    """The loops and comprehensions over ``param["name"]`` whose variable is a plain name read only
    as ``item["field"]`` or ``item.get("field", ...)`` inside them, and nowhere else in ``fn``:
    ``id(the param["name"] node) -> the fields read``. A loop whose variable does anything else
    (passed on, rebound, used after the loop, shared with another loop) is left out: its array is
    then read whole."""
    loops: list[tuple[ast.Subscript, ast.Name, list[ast.AST], ast.AST]] = []
    for node in ast.walk(fn):
        # A comprehension's variable is its own (Python 3): only its uses inside it count. A for
        # loop's belongs to the function: every use anywhere must be a read inside the loop.
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            sites: list[tuple[ast.expr, ast.expr, list[ast.AST], ast.AST]] = [
                (g.iter, g.target, [node], node) for g in node.generators
            ]
        elif isinstance(node, ast.For):
            sites = [(node.iter, node.target, list[ast.AST](node.body), fn)]
        else:
            continue
        for it, target, scope, owner in sites:
            if (  # alert["x"] or []: a nullable history, None either way
                isinstance(it, ast.BoolOp)
                and isinstance(it.op, ast.Or)
                and len(it.values) == 2
                and isinstance(it.values[1], ast.List | ast.Tuple)
                and not it.values[1].elts
            ):
                it = it.values[0]
            named = isinstance(it, ast.Subscript) and _is_name(it.value, param) and _literal(it.slice) is not None
            if named and isinstance(it, ast.Subscript) and isinstance(target, ast.Name):
                loops.append((it, target, scope, owner))
    out: dict[int, set[str]] = {}
    for it, target, scope, owner in loops:
        reads = _item_reads(scope, target.id)
        uses = [n for n in ast.walk(owner) if _is_name(n, target.id) and n is not target]
        if uses and all(id(n) in reads for n in uses):
            out[id(it)] = {reads[id(n)] for n in uses}
    return out


def _fields_used(fn: ast.FunctionDef, param: str) -> set[str] | None:
    """Fields read from ``param`` in ``fn`` (top-level names, ``array.field`` for the records of a
    loop over an array, ``array[field]`` for :meth:`Alert.history`); None when the alert is used
    any other way."""
    used: set[str] = set()
    allowed: set[int] = set()
    loops = _item_loops(fn, param)
    for node in ast.walk(fn):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == param:
            if not (isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)) or not isinstance(
                node.ctx, ast.Load
            ):
                return None
            name = node.slice.value
            used.update({f"{name}.{f}" for f in loops[id(node)]} if id(node) in loops else {name})
            allowed.add(id(node.value))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == param
        ):
            names = [_literal(a) for a in node.args]
            if node.func.attr == "history" and len(names) >= 2 and None not in names and not node.keywords:
                used.update(f"{names[0]}[{n}]" for n in names[1:])
            elif node.func.attr != "get" or not names or names[0] is None:
                return None
            else:
                used.add(str(names[0]))
            allowed.add(id(node.func.value))
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id == param and id(node) not in allowed:
            return None  # passed on, iterated, rebound, compared...: it needs the whole alert
    for node in ast.walk(fn):  # a nested def/lambda that shadows or closes over the alert: be safe
        if isinstance(node, (ast.FunctionDef, ast.Lambda, ast.AsyncFunctionDef)) and node is not fn:
            return None
    whole = {u for u in used if "." not in u and not u.endswith("[]")}
    return {u for u in used if u in whole or (u.partition(".")[0].partition("[")[0] not in whole)}


#: Names whose use anywhere in the source may read the alert out of sight of :func:`_fields_used`.
_DOUBTFUL = frozenset({"getattr", "f_locals", "_getframe", "currentframe", "f_back", "gi_frame", "tb_frame"})


def infer_fields(source: str, name: str) -> set[str] | None:
    """The alert fields the filter ``name`` in ``source`` reads, or None when unknown: top-level
    names, ``array.field`` and ``array[field]`` (see the module's docstring).

    A class-style filter is analysed through its ``filter`` method, a function directly. The
    inference is conservative, any doubt gives None (decode everything): the name bound more than
    once or inside an ``if``/``try``, a decorator, a ``filter`` the class does not define itself,
    ``eval``/``exec``/``getattr``/``globals()``/``vars()``/``__dict__``/frames anywhere in the source,
    or any use of the alert other than ``alert["x"]``, ``alert.get("x", ...)``, ``alert.history("x", "f", ...)``
    or a loop over ``alert["x"]`` as above, with literal names.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    bindings = read_bindings(tree)
    if bindings.dynamic or any(
        (isinstance(n, ast.Name) and n.id in _DOUBTFUL) or (isinstance(n, ast.Attribute) and n.attr in _DOUBTFUL)
        for n in ast.walk(tree)
    ):
        return None
    b = bindings.get(name)
    node = b.node if b.certain else None
    if isinstance(node, ast.FunctionDef) and not node.decorator_list:
        param = _alert_param(node, method=False)
        return _fields_used(node, param) if param else None
    if isinstance(node, ast.ClassDef) and not node.decorator_list:
        defs = [s for s in node.body if _binds(s, "filter")]
        if len(defs) == 1 and isinstance(defs[0], ast.FunctionDef) and not defs[0].decorator_list:
            param = _alert_param(defs[0], method=True)
            return _fields_used(defs[0], param) if param else None
    return None


def _binds(stmt: ast.stmt, name: str) -> bool:
    """True when the class-body statement ``stmt`` may bind ``name``."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return stmt.name == name
    if isinstance(stmt, ast.Expr | ast.Pass):
        return False
    return any(
        isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load) for n in ast.walk(stmt)
    ) or (
        not isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign)  # an if/for/try/import in the body: doubt
    )
