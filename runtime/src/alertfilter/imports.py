"""The modules a filter imports, read from its source without running it, and those of them the
runner image does not provide.

The runner image (``runtime/Dockerfile``) provides Python's standard library, the runtime's own
dependencies and the science packages of its ``science`` extra (numpy, astropy, light-curve, scipy,
scikit-learn). Their top-level module names are listed in ``runner-modules.txt`` beside this module,
generated from the image itself (``python -I -m alertfilter.imports`` run in it, see
``hack/runner-modules.sh``; a test of the image build checks that the list is current), so that
``alertfilter check`` on a laptop and the operator's admission webhook, neither of which runs in
that image, judge a filter's imports as the runner will.

:func:`read_imports` finds ``import a.b``, ``from x import y``, imports inside functions and
classes, and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name. An import
that the source itself is ready to see fail is *guarded* and never reported: inside the body of a
``try`` whose handlers catch ``ImportError`` (or ``ModuleNotFoundError``, ``Exception``,
``BaseException``, a bare ``except``), a ``with contextlib.suppress(ImportError)``, or an ``if
TYPE_CHECKING:``. Relative imports (``from . import x``) name no module of the image and are left
to the runner (a filter is one module: they fail to load there).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path

#: The list of the runner image's modules, a data file of this package.
RUNNER_MODULES_FILE = "runner-modules.txt"
#: The science packages the runner image carries for filters (the runtime's ``science`` extra), by
#: distribution name; README "The runner image" lists them with their versions.
SCIENCE_PACKAGES = ("numpy", "astropy", "light-curve", "scipy", "scikit-learn")

_CATCHES_IMPORT_ERROR = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_IMPORT_CALLS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class ImportRef:
    """One import in a filter's source.

    Attributes:
        module: the dotted module name as written (``a.b`` of ``import a.b``, ``x`` of ``from x import y``).
        line, column: where the statement (or call) is, 1-based.
        guarded: the source catches its failure (see the module's docstring).
    """

    module: str
    line: int
    column: int
    guarded: bool = False

    @property
    def top(self) -> str:
        """The top-level module (``a`` of ``a.b``): what a Python environment provides or not."""
        return self.module.partition(".")[0]


@dataclass(frozen=True)
class RunnerModules:
    """What the runner image provides: its top-level module names, and its installed packages
    (distribution name and version) as the list records them."""

    modules: frozenset[str]
    packages: dict[str, str]

    def __contains__(self, name: object) -> bool:
        return name in self.modules

    def science(self) -> dict[str, str]:
        """The science packages and their versions in the image."""
        return {name: self.packages[name] for name in SCIENCE_PACKAGES if name in self.packages}


# --- reading a source's imports --------------------------------------------------------------------
def _name_of(node: ast.expr) -> str | None:
    """``ImportError`` of ``ImportError`` or ``builtins.ImportError``; None otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(_name_of(t) in _CATCHES_IMPORT_ERROR for t in types)


def _suppresses_import_error(item: ast.withitem) -> bool:
    call = item.context_expr
    return (
        isinstance(call, ast.Call)
        and _name_of(call.func) == "suppress"
        and any(_name_of(a) in _CATCHES_IMPORT_ERROR for a in call.args)
    )


def _is_type_checking(test: ast.expr) -> bool:
    return _name_of(test) == "TYPE_CHECKING"


def _literal_module(call: ast.Call) -> str | None:
    """The module a ``importlib.import_module("x")`` or ``__import__("x")`` call names, when literal
    and absolute."""
    if _name_of(call.func) not in _IMPORT_CALLS or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
        name = first.value
        if not name.startswith(".") and all(part.isidentifier() for part in name.split(".")):
            return name
    return None


def _children(node: ast.AST, guarded: bool) -> Iterator[tuple[ast.AST, bool]]:
    """The nodes under ``node`` to look into, each with whether an import there is guarded."""
    if isinstance(node, ast.Try | ast.TryStar):
        body_guarded = guarded or any(_catches_import_error(h) for h in node.handlers)
        yield from ((stmt, body_guarded) for stmt in node.body)
        yield from ((part, guarded) for part in (*node.handlers, *node.orelse, *node.finalbody))
    elif isinstance(node, ast.With | ast.AsyncWith):
        body_guarded = guarded or any(_suppresses_import_error(i) for i in node.items)
        yield from ((item, guarded) for item in node.items)
        yield from ((stmt, body_guarded) for stmt in node.body)
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        yield from ((stmt, True) for stmt in node.body)
        yield from ((stmt, guarded) for stmt in node.orelse)
    else:
        yield from ((child, guarded) for child in ast.iter_child_nodes(node))


def _walk(root: ast.AST, guarded: bool) -> Iterator[ImportRef]:
    # a stack, not recursion: a source the compiler takes may nest deeper than Python's recursion
    # limit (a thousand `+` in one expression), and the webhook must answer it, not fail
    stack = [(root, guarded)]
    while stack:
        node, guarded = stack.pop()
        if isinstance(node, ast.Import):
            yield from (ImportRef(alias.name, node.lineno, node.col_offset + 1, guarded) for alias in node.names)
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield ImportRef(node.module, node.lineno, node.col_offset + 1, guarded)
            continue
        if isinstance(node, ast.Call):
            name = _literal_module(node)
            if name is not None:
                yield ImportRef(name, node.lineno, node.col_offset + 1, guarded)
        stack.extend(_children(node, guarded))


def read_imports(tree: ast.AST) -> list[ImportRef]:
    """Every absolute import of ``tree`` (statements, and calls with a literal module name), in
    source order."""
    return sorted(_walk(tree, False), key=lambda r: (r.line, r.column))


# --- what an environment provides ------------------------------------------------------------------
def _parse_list(text: str) -> RunnerModules:
    modules: set[str] = set()
    packages: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# package "):
            name, _, version = line.removeprefix("# package ").partition(" ")
            packages[name] = version.strip()
        elif line and not line.startswith("#"):
            modules.add(line)
    return RunnerModules(frozenset(modules), packages)


@cache
def runner_modules() -> RunnerModules:
    """The runner image's modules and packages, from the list shipped with this package.

    Raises:
        FileNotFoundError: the list is missing (a broken install).
    """
    text = resources.files(__package__ or "alertfilter").joinpath(RUNNER_MODULES_FILE).read_text(encoding="utf-8")
    return _parse_list(text)


def _site_packages() -> list[str]:
    """The folders of ``sys.path`` outside the standard library (site-packages)."""
    stdlib = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)}
    out = []
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        site = "site-packages" in path.parts or "dist-packages" in path.parts
        if site or (path.is_dir() and not any(path == s or s in path.parents for s in stdlib)):
            out.append(str(path))
    return out


def local_modules() -> RunnerModules:
    """What this Python environment provides: the standard library's modules it has, the
    top-level modules of its site-packages, and its installed distributions."""
    stdlib = {m for m in sys.stdlib_module_names if m in sys.builtin_module_names or importlib.util.find_spec(m)}
    found = {m.name for m in pkgutil.iter_modules(_site_packages()) if m.name.isidentifier()}
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[_canonical(name)] = dist.version
    return RunnerModules(frozenset(stdlib | found), dict(sorted(packages.items())))


def _canonical(name: str) -> str:
    """A distribution's name as PEP 503 normalises it (``scikit_learn`` -> ``scikit-learn``)."""
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def render_list(found: RunnerModules) -> str:
    """``runner-modules.txt``'s text for ``found``."""
    lines = [
        "# The top-level modules a filter can import in the runner image (runtime/Dockerfile): one a line,",
        "# after its installed packages. Generated from the image by hack/runner-modules.sh (do not edit);",
        "# tests/images checks that it is current.",
        f"# python {sys.version_info.major}.{sys.version_info.minor}",
        *(f"# package {name} {version}" for name, version in sorted(found.packages.items())),
        *sorted(found.modules),
    ]
    return "\n".join(lines) + "\n"


# --- the check -------------------------------------------------------------------------------------
def missing_imports(tree: ast.AST, provided: Collection[str] | RunnerModules | None = None) -> list[ImportRef]:
    """The unguarded imports of ``tree`` whose top-level module ``provided`` lacks (default: the
    runner image's), one per statement and module, in source order."""
    have = runner_modules() if provided is None else provided
    seen: set[tuple[str, int, int]] = set()
    out = []
    for ref in read_imports(tree):
        key = (ref.top, ref.line, ref.column)
        if not ref.guarded and ref.top not in have and key not in seen:
            seen.add(key)
            out.append(ref)
    return out


def describe_missing(ref: ImportRef, where: str = "the runner image") -> str:
    """The message of a missing import, for ``check``'s warning and the webhook's refusal."""
    science = ", ".join(runner_modules().science()) if where == "the runner image" else ""
    has = f" (it has the standard library and {science})" if science else ""
    return f"module {ref.top!r} is not in {where}{has}"


_RUNNER_HINT = (
    "the runner will not load this filter, and the operator refuses it, unless its AlertFilter names an image "
    "built FROM the runner image that has it (spec.image)"
)


def import_warnings_of(source: str, local: bool = False) -> list[tuple[ImportRef, str]]:
    """``alertfilter check``'s warnings: the imports of ``source`` that the runner image (its module
    list, shipped with the runtime) or, with ``local``, this Python environment (a group's own image)
    does not provide, each with its message; none for a source that does not parse (loading says why)."""
    try:
        tree = ast.parse(source.removeprefix("\ufeff"))
    except (SyntaxError, ValueError):
        return []
    if local:
        where = "this Python environment"
        return [
            (r, f"{describe_missing(r, where)}; the filter will not load here")
            for r in missing_imports(tree, local_modules())
        ]
    return [(r, f"{describe_missing(r)}: {_RUNNER_HINT}") for r in missing_imports(tree)]


def main(argv: list[str] | None = None) -> int:
    """``python -I -m alertfilter.imports``: print ``runner-modules.txt`` for this environment (run
    in the runner image; ``--check FILE``: exit 1, with the differences, when FILE is not that)."""
    args = sys.argv[1:] if argv is None else argv
    text = render_list(local_modules())
    if args[:1] == ["--check"] and len(args) == 2:
        shipped = _parse_list(Path(args[1]).read_text(encoding="utf-8"))
        here = _parse_list(text)
        diff = [f"+ {m}" for m in sorted(here.modules - shipped.modules)]
        diff += [f"- {m}" for m in sorted(shipped.modules - here.modules)]
        diff += [
            f"~ package {n} {shipped.packages.get(n)} -> {here.packages.get(n)}"
            for n in sorted(set(here.packages) | set(shipped.packages))
            if here.packages.get(n) != shipped.packages.get(n)
        ]
        sys.stdout.write(("\n".join(diff) if diff else "current") + "\n")
        return 1 if diff else 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
