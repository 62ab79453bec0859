"""The static reading of a filter's imports (alertfilter/imports.py) and `alertfilter check`'s warning
for a module the runner image does not provide (issue #15, a scientific runtime)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from alertfilter.api import ImportRef, missing_imports, parse_source, read_imports, runner_modules
from alertfilter.imports import SCIENCE_PACKAGES, describe_missing, local_modules, render_list

from .cli_run import run

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "tests" / "data" / "sim-lsst-alert-1.avro"


def _missing(source: str) -> list[tuple[str, int, int]]:
    return [(r.top, r.line, r.column) for r in missing_imports(parse_source(source))]


# --- what the runner image provides ----------------------------------------------------------------
def test_the_shipped_list_has_the_standard_library_and_the_science_packages() -> None:
    have = runner_modules()
    for name in ("os", "json", "math", "collections", "dataclasses", "__future__", "typing"):
        assert name in have, name
    for name in ("numpy", "astropy", "light_curve", "scipy", "sklearn", "alertfilter"):
        assert name in have, name
    assert set(have.science()) == set(SCIENCE_PACKAGES)
    assert "pandas" not in have and "torch" not in have


def test_the_science_packages_are_pinned_and_the_list_records_those_versions() -> None:
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    for name, version in runner_modules().science().items():
        assert pins[name] == version, name


def test_the_readme_lists_each_science_package_with_its_version() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, version in runner_modules().science().items():
        assert f"`{name}` {version}" in readme or f"| `{name}` | {version} |" in readme, name


def test_the_list_renders_back_to_what_it_parses() -> None:
    here = local_modules()
    assert "os" in here and "pytest" in here.modules
    from alertfilter.imports import _parse_list

    again = _parse_list(render_list(here))
    assert again.modules == here.modules and again.packages == here.packages


# --- reading the imports ---------------------------------------------------------------------------
def test_the_standard_library_and_the_provided_packages_pass() -> None:
    source = (
        "from __future__ import annotations\nimport os, math\nimport numpy as np\nfrom astropy.time import Time\n"
        "import light_curve as lc\nimport scipy.stats\nfrom sklearn.ensemble import IsolationForest\n"
        "def f(alert):\n    return True\n"
    )
    assert _missing(source) == []


def test_a_missing_module_is_reported_with_its_line_and_column() -> None:
    source = "import math\n\nimport pandas as pd\ndef f(alert):\n    return True\n"
    assert _missing(source) == [("pandas", 3, 1)]


def test_from_imports_and_dotted_imports_are_judged_by_their_top_level_module() -> None:
    source = "from torch import nn\nimport xgboost.sklearn\nimport numpy.linalg\nfrom astropy import units as u\n"
    assert _missing(source) == [("torch", 1, 1), ("xgboost", 2, 1)]
    assert [r.module for r in read_imports(parse_source(source))] == [
        "torch",
        "xgboost.sklearn",
        "numpy.linalg",
        "astropy",
    ]


def test_imports_inside_functions_and_classes_count() -> None:
    source = (
        "class F:\n    import json\n    def filter(self, alert):\n        import pandas\n        return True\n"
        "def g(alert):\n    if alert:\n        from polars import col\n    return True\n"
    )
    assert _missing(source) == [("pandas", 4, 9), ("polars", 8, 9)]


def test_import_module_and_dunder_import_with_a_literal_name() -> None:
    source = (
        "import importlib\ndef f(alert):\n    m = importlib.import_module('pandas.io')\n"
        "    n = __import__('numpy')\n    o = importlib.import_module(alert['name'])\n"
        "    p = importlib.import_module('.rel', 'pkg')\n    return True\n"
    )
    assert _missing(source) == [("pandas", 3, 9)]


def test_imports_the_source_is_ready_to_see_fail_are_not_reported() -> None:
    source = (
        "try:\n    import pandas\nexcept ImportError:\n    pandas = None\n"
        "try:\n    import polars\nexcept (ValueError, ModuleNotFoundError):\n    polars = None\n"
        "try:\n    import torch\nexcept Exception:\n    torch = None\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pyarrow\n"
        "import contextlib\nwith contextlib.suppress(ImportError):\n    import xgboost\n"
        "def f(alert):\n    return True\n"
    )
    assert _missing(source) == []
    assert all(r.guarded for r in read_imports(parse_source(source)) if r.top not in ("typing", "contextlib"))


def test_an_import_in_a_try_that_catches_something_else_is_reported() -> None:
    source = (
        "try:\n    import pandas\nexcept KeyError:\n    pass\n"
        "try:\n    import numpy\nexcept ImportError:\n    import polars\n"
    )
    assert _missing(source) == [("pandas", 2, 5), ("polars", 8, 5)]  # a handler's own import is not guarded


def test_relative_imports_name_no_module_of_the_image() -> None:
    assert read_imports(parse_source("from . import x\nfrom .y import z\n")) == []


def test_the_message_names_the_module_and_what_the_image_has() -> None:
    message = describe_missing(ImportRef("pandas.io", 3, 1))
    assert message.startswith("module 'pandas' is not in the runner image")
    assert "numpy" in message and "astropy" in message and "light-curve" in message


def test_an_explicit_module_set_replaces_the_runner_images() -> None:
    tree = ast.parse("import pandas\nimport numpy\n")
    assert [r.top for r in missing_imports(tree, {"pandas"})] == ["numpy"]


# --- alertfilter check -----------------------------------------------------------------------------
def test_check_warns_of_an_import_the_runner_image_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # pytest imports here (the filter loads and runs) but the runner image does not have it
    flt = tmp_path / "f.py"
    flt.write_text("import math\nimport pytest\n\ndef f(alert):\n    return True\n")
    code, out, err = run(capsys, "check", flt, "--alerts", ALERTS, "--json")
    assert code == 0
    assert f"{flt}:2:1: warning: module 'pytest' is not in the runner image" in err
    assert "spec.image" in err
    res = json.loads(out)
    assert res["accepted"] == 1
    assert [(w["line"], w["column"], w["module"]) for w in res["import_warnings"]] == [(2, 1, "pytest")]


def test_check_warns_before_a_filter_that_cannot_load_here_either(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flt = tmp_path / "f.py"
    flt.write_text("def f(alert):\n    import no_such_module_anywhere\n    return True\n\nimport nor_this_one\n")
    code, out, err = run(capsys, "check", flt, "--alerts", ALERTS, "--json")
    assert code == 2
    assert f"{flt}:2:5: warning: module 'no_such_module_anywhere'" in err
    assert f"{flt}:5:1: warning: module 'nor_this_one'" in err
    res = json.loads(out)
    assert "nor_this_one" in res["error"]["message"]
    assert [w["module"] for w in res["import_warnings"]] == ["no_such_module_anywhere", "nor_this_one"]


def test_check_says_nothing_of_provided_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flt = tmp_path / "f.py"
    flt.write_text("import numpy as np\n\ndef f(alert):\n    return bool(np.isfinite(1.0))\n")
    code, _, err = run(capsys, "check", flt, "--alerts", ALERTS)
    assert code == 0 and "warning: module" not in err, err


def test_check_with_local_modules_judges_by_this_python(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # pytest is in this environment, not in the runner image: a group's own image would say the same
    flt = tmp_path / "f.py"
    flt.write_text("import pytest\nimport no_such_module_anywhere\n\ndef f(alert):\n    return True\n")
    code, _, err = run(capsys, "check", flt, "--alerts", ALERTS, "--modules", "local")
    assert "module 'pytest'" not in err
    assert f"{flt}:2:1: warning: module 'no_such_module_anywhere' is not in this Python environment" in err
    assert code == 2  # and loading it fails here, as the warning said
    assert sys.modules.get("no_such_module_anywhere") is None


def test_a_tree_deeper_than_python_s_recursion_limit_is_read_without_failing():
    # a source the compiler takes can nest past the recursion limit (a thousand `+` in one
    # expression): the webhook must still answer, with the line of the import it lacks
    expr: ast.expr = ast.Name("alert", ast.Load())
    for _ in range(5000):
        expr = ast.BinOp(expr, ast.Add(), ast.Name("alert", ast.Load()))
    body = [ast.Import([ast.alias("pandas")], lineno=1, col_offset=0), ast.Expr(expr)]
    tree = ast.Module(body, [])  # ast's own helpers recurse: only the import needs its place
    assert [(r.top, r.line) for r in missing_imports(tree)] == [("pandas", 1)]
