"""Which stream a filter may read: its pool's lean stream (cutouts null, :mod:`alertfilter.lean`) or
the full stream, told from its source without running it (the operator's choice, pure).

A filter reads the lean stream when the fields it reads are known and none is a cutout: its own
``fields`` declaration when the source gives it as a literal (a class attribute
``fields = ["diaSource", ...]``, or ``name.fields = [...]`` after a function), else the fields
inferred from the source (:func:`alertfilter.inference.infer_fields`), the same fields the runner
decodes (:func:`alertfilter.decoding.decode_fields`); plus the top-level names of the visit and id
fields. Any doubt (no entrypoint known before loading, a declaration that is not a literal or is
touched anywhere else, fields that cannot be inferred) reads the full stream: a filter is never
given an alert without the cutouts it reads.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .inference import infer_fields
from .lean import reads_cutouts

__all__ = ["Route", "declared_fields", "route"]


@dataclass(frozen=True)
class Route:
    """Which stream a filter reads.

    Attributes:
        lean: True for the lean stream. why: a sentence for the filter's status.
        fields: the fields it reads (None: unknown).
    """

    lean: bool
    why: str
    fields: frozenset[str] | None = None


def _literal_names(node: ast.expr | None) -> set[str] | None:
    if isinstance(node, ast.List | ast.Tuple | ast.Set) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return None


def declared_fields(source: str, name: str) -> set[str] | None:
    """The fields the filter ``name`` declares as a literal (``fields = [...]`` in its class body,
    or ``name.fields = [...]`` at module level), or None when it declares none, or not as a
    literal, or ``fields`` is named anywhere else in the source (it could change at run time)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found: list[set[str] | None] = []
    sites: set[int] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            for s in stmt.body:
                target, value = _assignment(s)
                if isinstance(target, ast.Name) and target.id == "fields":
                    found.append(_literal_names(value))
                    sites.add(id(target))
        target, value = _assignment(stmt)
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "fields"
            and isinstance(target.value, ast.Name)
            and target.value.id == name
        ):
            found.append(_literal_names(value))
            sites.add(id(target))
    if len(found) != 1 or found[0] is None:
        return None
    for n in ast.walk(tree):  # `fields` anywhere else (read, changed, shadowed): it could differ at run time
        named = (isinstance(n, ast.Name) and n.id == "fields") or (isinstance(n, ast.Attribute) and n.attr == "fields")
        if named and id(n) not in sites:
            return None
        if isinstance(n, ast.Constant) and n.value == "fields":  # getattr(x, "fields"), setattr...
            return None
    return found[0]


def _assignment(stmt: ast.stmt) -> tuple[ast.expr | None, ast.expr | None]:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        return stmt.targets[0], stmt.value
    if isinstance(stmt, ast.AnnAssign):
        return stmt.target, stmt.value
    return None, None


def route(source: str, name: str | None, visit_field: str, id_field: str, forced_full: bool = False) -> Route:
    """The stream the filter ``name`` of ``source`` reads (see the module's docstring).

    Args:
        name: its entrypoint (``check_source``'s); None or empty when only loading can tell.
        visit_field, id_field: dotted paths; their top-level names are read too.
        forced_full: the filter asks for the full stream (``spec.stream: full``).
    """
    if forced_full:
        return Route(False, "spec.stream is full")
    if not name:
        return Route(False, "the entrypoint is known only once the module is loaded: the full stream")
    src = source.removeprefix("\ufeff")
    declared = declared_fields(src, name)
    fields = declared if declared is not None else infer_fields(src, name)
    if fields is None:
        return Route(False, "the fields the filter reads cannot be inferred from its source: the full stream")
    names = frozenset(fields | {visit_field.split(".")[0], id_field.split(".")[0]})
    how = "declared" if declared is not None else "inferred"
    if reads_cutouts(names):
        return Route(False, f"its {how} fields include a cutout: the full stream", names)
    return Route(True, f"its {how} fields include no cutout: the lean stream", names)
