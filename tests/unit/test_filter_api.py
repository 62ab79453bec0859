"""The filter API: loading filter source and the errors a filter author sees."""

import math
from typing import Any, cast

import pytest

from alertfilter import AlertFilter, FilterSourceError, load_filter
from alertfilter.api import check_result

CLASS_SRC = """
from alertfilter import AlertFilter

class Bright(AlertFilter):
    def __init__(self):
        self.limit = 10

    def filter(self, alert):
        return alert["diaSource"]["snr"] > self.limit
"""


def test_class_style_filter_is_called_with_the_alert():
    f = load_filter(CLASS_SRC)
    assert f.name == "Bright" and f.style == "class"
    assert f({"diaSource": {"snr": 11.0}}) is True
    assert f({"diaSource": {"snr": 3.0}}) is False


def test_function_style_filter():
    f = load_filter("def keep_r(alert):\n    return alert['band'] == 'r'\n")
    assert f.name == "keep_r" and f.style == "function"
    assert f({"band": "r"}) is True


def test_source_hash_is_sha256_of_the_source():
    import hashlib

    src = "def f(alert):\n    return True\n"
    assert load_filter(src).source_sha256 == hashlib.sha256(src.encode()).hexdigest()


def test_syntax_error_carries_line_and_column():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("def f(alert):\n    return alert[\n\nx = 1 +\n")
    assert ei.value.line >= 2 and ei.value.column >= 1
    assert "syntax error" in ei.value.message
    assert str(ei.value).startswith(f"line {ei.value.line}, column {ei.value.column}")


def test_syntax_error_exact_position():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("def f(alert):\n    return alert ==\n")
    assert (ei.value.line, ei.value.column) == (2, 20)


def test_error_while_module_body_runs_names_its_line():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("import math\n\nLIMIT = undefined_name * 2\n\ndef f(alert):\n    return True\n")
    assert ei.value.line == 3
    assert "NameError" in ei.value.message


def test_missing_entrypoint_lists_what_exists():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("def a(alert):\n    return True\n", entrypoint="b")
    assert "'b' is not defined" in ei.value.message and "a" in ei.value.message


def test_several_candidates_need_an_entrypoint():
    src = "def a(alert):\n    return True\n\ndef b(alert):\n    return False\n"
    with pytest.raises(FilterSourceError) as ei:
        load_filter(src)
    assert "several filters" in ei.value.message and (ei.value.line, ei.value.column) == (4, 1)
    assert load_filter(src, entrypoint="b")({}) is False


def test_classes_win_over_helper_functions():
    src = "from alertfilter import AlertFilter\ndef helper(x):\n    return x\nclass F(AlertFilter):\n    def filter(self, alert):\n        return helper(True)\n"
    assert load_filter(src).name == "F"


def test_private_helpers_are_not_candidates():
    assert load_filter("def _h(x):\n    return x\ndef f(alert):\n    return _h(True)\n").name == "f"


def test_wrong_function_signature_is_reported_at_its_def():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("x = 1\ndef f(alert, other):\n    return True\n")
    assert (ei.value.line, ei.value.column) == (2, 1)
    assert "exactly one argument" in ei.value.message


def test_class_without_filter_method():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("from alertfilter import AlertFilter\nclass F(AlertFilter):\n    pass\n")
    assert "does not define filter" in ei.value.message and ei.value.line == 2


def test_class_filter_with_wrong_signature():
    src = "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    def filter(self):\n        return True\n"
    with pytest.raises(FilterSourceError) as ei:
        load_filter(src)
    assert ei.value.line == 3 and "exactly one argument" in ei.value.message


def test_class_that_needs_constructor_arguments():
    src = "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    def __init__(self, x):\n        pass\n    def filter(self, a):\n        return True\n"
    with pytest.raises(FilterSourceError) as ei:
        load_filter(src)
    assert "F() failed" in ei.value.message


def test_no_filter_at_all():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("X = 1\n")
    assert "no filter found" in ei.value.message


@pytest.mark.parametrize("src", ["", "   \n", None])
def test_empty_source(src):
    with pytest.raises(FilterSourceError):
        load_filter(src)


def test_null_byte_in_source():
    with pytest.raises(FilterSourceError):
        load_filter("def f(alert):\n    return True\x00\n")


def test_entrypoint_naming_a_non_callable():
    with pytest.raises(FilterSourceError) as ei:
        load_filter("X = 1\ndef f(alert):\n    return True\n", entrypoint="X")
    assert "not a class or function" in ei.value.message


def test_nan_and_none_reach_the_filter_untouched():
    src = (
        "from alertfilter import AlertFilter\n"
        "class Keep(AlertFilter):\n"
        "    def filter(self, alert):\n"
        "        self.seen = alert\n"
        "        return True\n"
    )
    f = load_filter(src)
    alert = {"diaSource": {"snr": float("nan"), "psfFlux": None}}
    assert f(alert) is True
    seen: Any = f.func.__self__.seen  # type: ignore[attr-defined]  # a bound method of the filter instance
    assert seen is alert
    assert math.isnan(cast(float, seen["diaSource"]["snr"])) and seen["diaSource"]["psfFlux"] is None


def test_check_result_accepts_only_bools():
    assert check_result(True) is True and check_result(False) is False
    for bad in (1, 0, None, "yes", [True]):
        with pytest.raises(TypeError):
            check_result(bad)


def test_base_class_filter_raises():
    with pytest.raises(NotImplementedError):
        AlertFilter().filter({})


# --- check_source: the operator's static check must agree with load_filter -----------------------
from alertfilter import check_source  # noqa: E402

AGREEING_SOURCES = [
    CLASS_SRC,
    "def keep_r(alert):\n    return alert['band'] == 'r'\n",
    "def f(alert):\n    return alert[\n\nx = 1 +\n",
    "def f(alert):\n    return alert ==\n",
    "def a(alert):\n    return True\n\ndef b(alert):\n    return False\n",
    "x = 1\ndef f(alert, other):\n    return True\n",
    "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    pass\n",
    "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    def filter(self):\n        return True\n",
    "X = 1\n",
    "async def f(alert):\n    return True\n",
    "def f(alert, extra=1):\n    return True\n",
    "def _h(x):\n    return x\ndef f(alert):\n    return _h(True)\n",
    "import alertfilter\nclass F(alertfilter.AlertFilter):\n    def filter(self, a):\n        return True\n",
]


@pytest.mark.parametrize("src", AGREEING_SOURCES)
def test_check_source_agrees_with_load_filter(src):
    expected: FilterSourceError | None = None
    try:
        loaded = load_filter(src)
    except FilterSourceError as exc:
        expected = exc
    if expected is None:
        assert check_source(src).name == loaded.name
    else:
        with pytest.raises(FilterSourceError) as ei:
            check_source(src)
        assert (ei.value.line, ei.value.column) == (expected.line, expected.column), (ei.value, expected)


def test_check_source_never_runs_the_source(tmp_path):
    marker = tmp_path / "ran"
    src = f"open({str(marker)!r}, 'w').write('x')\ndef f(alert):\n    return True\n"
    assert check_source(src).name == "f"
    assert not marker.exists()


def test_check_source_rejects_constructor_arguments():
    src = "from alertfilter import AlertFilter\nclass F(AlertFilter):\n    def __init__(self, x):\n        pass\n    def filter(self, a):\n        return True\n"
    with pytest.raises(FilterSourceError) as ei:
        check_source(src)
    assert ei.value.line == 3


def test_check_source_entrypoint_assigned_at_run_time_is_left_to_the_runner():
    assert check_source("def make():\n    return lambda a: True\nflt = make()\n", entrypoint="flt").name == "flt"
    with pytest.raises(FilterSourceError, match="'nope' is not defined"):
        check_source("def f(alert):\n    return True\n", entrypoint="nope")


# --- what a filter source can do to the loader: always a FilterSourceError ---------------------------
@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("import sys\nsys.exit(3)\n", 2, "SystemExit: 3"),
        ("x = 1\nraise KeyboardInterrupt\n", 2, "KeyboardInterrupt"),
        ("raise GeneratorExit('bye')\n", 1, "GeneratorExit: bye"),
    ],
)
def test_module_body_that_exits_or_interrupts_is_a_source_error(body, line, what):
    with pytest.raises(FilterSourceError) as ei:
        load_filter(body + "def f(alert):\n    return True\n")
    assert ei.value.line == line and what in ei.value.message and "when loaded" in ei.value.message


@pytest.mark.parametrize("exc", ["SystemExit(0)", "KeyboardInterrupt", "GeneratorExit"])
def test_init_that_exits_or_interrupts_is_a_source_error(exc):
    src = (
        "from alertfilter import AlertFilter\n"
        "class F(AlertFilter):\n"
        "    def __init__(self):\n"
        f"        raise {exc}\n"
        "    def filter(self, alert):\n"
        "        return True\n"
    )
    with pytest.raises(FilterSourceError) as ei:
        load_filter(src)
    assert ei.value.line == 4 and ei.value.message.startswith("F() failed: " + exc.split("(")[0])


@pytest.mark.parametrize(
    ("attr", "words"),
    [
        ("filter = 5", "F.filter is an int, not a method"),
        ("filter = None", "F.filter is a NoneType, not a method"),
        (
            "@property\n    def filter(self):\n        raise RuntimeError('no')",
            "reading F.filter raised RuntimeError: no",
        ),
    ],
)
def test_filter_attribute_that_is_not_a_method(attr, words):
    with pytest.raises(FilterSourceError) as ei:
        load_filter(f"from alertfilter import AlertFilter\nclass F(AlertFilter):\n    {attr}\n")
    assert words in ei.value.message and ei.value.line >= 3


@pytest.mark.parametrize(
    "src",
    [
        "x = " + "1+" * 200_000 + "1\ndef f(a):\n    return True\n",  # RecursionError in the compiler
        "x = " + "-" * 200_000 + "1\ndef f(a):\n    return True\n",  # MemoryError in the parser
    ],
)
def test_source_too_deep_to_compile_is_a_source_error(src):
    with pytest.raises(FilterSourceError, match="too deeply nested or too large to compile"):
        load_filter(src)


def test_empty_entrypoint_is_an_error():
    for name in ("", "  "):
        with pytest.raises(FilterSourceError, match="empty entrypoint"):
            load_filter("def f(alert):\n    return True\n", entrypoint=name)


def test_utf8_bom_at_the_start_is_ignored_and_hashed_as_given():
    import hashlib

    src = "\ufeffdef f(alert):\n    return True\n"
    flt = load_filter(src)
    assert flt.name == "f" and flt({}) is True
    assert flt.source_sha256 == hashlib.sha256(src.encode()).hexdigest()


# --- check_result: what a filter returns cannot break the runner -------------------------------------
class _BadRepr:
    def __repr__(self):
        raise RuntimeError("repr boom")


def test_check_result_names_the_type_when_repr_raises():
    from alertfilter.api import NonBoolResult

    with pytest.raises(NonBoolResult) as ei:
        check_result(_BadRepr())
    assert str(ei.value) == "filter returned _BadRepr <_BadRepr object>, not bool"
    assert isinstance(ei.value, TypeError)


def test_numpy_booleans_are_verdicts():
    np = pytest.importorskip("numpy")
    assert check_result(np.True_) is True and check_result(np.float64(3.0) > 5) is False
    assert check_result(np.isfinite(np.float64("nan"))) is False


def _fake_numpy_bool(name, module, truth):
    def __bool__(self):
        if isinstance(truth, BaseException):
            raise truth
        return truth

    return type(name, (), {"__module__": module, "__bool__": __bool__, "__repr__": lambda self: "fake"})()


def test_only_numpys_own_bool_type_counts():
    from alertfilter.api import NonBoolResult

    assert check_result(_fake_numpy_bool("bool", "numpy", True)) is True  # numpy 2 names it bool
    assert check_result(_fake_numpy_bool("bool_", "numpy", False)) is False  # numpy 1 names it bool_
    with pytest.raises(NonBoolResult, match="filter returned bool_ fake, not bool"):
        check_result(_fake_numpy_bool("bool_", "alertfilter_user_filter", True))  # a filter's own class
    with pytest.raises(NonBoolResult, match="truth value cannot be read: ZeroDivisionError: boom"):
        check_result(_fake_numpy_bool("bool", "numpy", ZeroDivisionError("boom")))
