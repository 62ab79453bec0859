"""One rule decides what a filter is: what the static check (the webhook, the operator) accepts,
loading accepts, and what it rejects for sure, loading rejects; both name the same filter."""

from __future__ import annotations

import pytest

from alertfilter import load_filter
from alertfilter.api import FilterSourceError, check_source

ALERT = {"diaSource": {"snr": 10.0, "visit": 1}, "diaSourceId": 1}

#: Sources a filter author may write, each loadable (and usable on ALERT).
LOADABLE = {
    "base-class alias (import as)": (
        "from alertfilter import AlertFilter as Base\n\n"
        "class Bright(Base):\n    def filter(self, alert):\n        return alert['diaSource']['snr'] > 5\n"
    ),
    "base-class alias (assignment)": (
        "import alertfilter\nBase = alertfilter.AlertFilter\n\n"
        "class Bright(Base):\n    def filter(self, alert):\n        return True\n"
    ),
    "def inside an if": "import sys\n\nif sys.version_info >= (3, 8):\n    def bright(alert):\n        return True\n",
    "def inside a try": "try:\n    import numpy\nexcept ImportError:\n    pass\n\ndef bright(alert):\n    return True\n",
    "filter = lambda": "filter = lambda alert: alert['diaSource']['snr'] > 5\n",
    "lambda beside a private helper": "def _snr(a):\n    return a['diaSource']['snr']\n\nbright = lambda a: _snr(a) > 5\n",
    "factory": "def _make(t):\n    return lambda a: a['diaSource']['snr'] > t\n\nbright = _make(5)\n",
    "decorated def": (
        "import functools\n\ndef _log(f):\n    @functools.wraps(f)\n    def w(a):\n        return f(a)\n    return w\n\n"
        "@_log\ndef bright(alert):\n    return True\n"
    ),
    "base imported from a helper module": (
        "from alertfilter import AlertFilter\nimport collections\n\n"
        "class Helper(collections.UserDict):\n    pass\n\ndef bright(alert):\n    return True\n"
    ),
    "class defined twice, last wins": (
        "from alertfilter import AlertFilter\n\nclass F(AlertFilter):\n    def filter(self):\n        return True\n\n"
        "class F(AlertFilter):\n    def filter(self, alert):\n        return True\n"
    ),
    "globals()": "globals()['bright'] = lambda alert: True\n",
    "exec": "exec('def bright(alert):\\n    return True\\n')\n",
    "def after a constant from a call": "import math\nLIMIT = math.log10(5)\n\ndef bright(alert):\n    return True\n",
    "inherited filter": (
        "from alertfilter import AlertFilter\n\nclass _Mixin:\n    def filter(self, alert):\n"
        "        return True\n\nclass Bright(_Mixin, AlertFilter):\n    pass\n"
    ),
    "deleted helper": "def helper(a):\n    return a\n\ndef bright(alert):\n    return True\n\ndel helper\n",
}

#: Sources loading rejects for a reason the static check must also see.
REJECTED = {
    "two functions": "def a(alert):\n    return True\n\ndef b(alert):\n    return True\n",
    "two lambdas": "a = lambda alert: True\nb = lambda alert: True\n",
    "function alias": "def a(alert):\n    return True\n\nb = a\n",
    "no filter": "import math\nX = 5\n",
    "wrong arity": "def f(alert, other):\n    return True\n",
    "lambda arity": "f = lambda: True\n",
    "async": "async def f(alert):\n    return True\n",
    "no filter method": "from alertfilter import AlertFilter as B\n\nclass F(B):\n    pass\n",
    "constructor arguments": (
        "from alertfilter import AlertFilter\n\nclass F(AlertFilter):\n    def __init__(self, x):\n        pass\n\n"
        "    def filter(self, alert):\n        return True\n"
    ),
}


@pytest.mark.parametrize("src", LOADABLE.values(), ids=LOADABLE.keys())
def test_what_loading_accepts_the_static_check_accepts(src: str) -> None:
    loaded = load_filter(src)
    found = check_source(src)  # raises if the webhook would refuse it
    assert found.name in ("", loaded.name)  # "" only where running the module is the one way to tell
    assert loaded(ALERT) in (True, False)


@pytest.mark.parametrize("src", REJECTED.values(), ids=REJECTED.keys())
def test_what_the_static_check_rejects_loading_rejects(src: str) -> None:
    with pytest.raises(FilterSourceError) as loaded:
        load_filter(src)
    with pytest.raises(FilterSourceError) as static:
        check_source(src)
    if "several" in loaded.value.message:  # the same rule: the same second candidate blamed
        assert (static.value.line, static.value.column) == (loaded.value.line, loaded.value.column)


@pytest.mark.parametrize(
    ("src", "line", "column"),
    [
        ("def f(alert):\n    return True\n\0", 3, 1),
        ("def f(alert):\n    return alert['x\0']\n", 2, 20),
        ("\0def f(alert): return True\n", 1, 1),
    ],
)
def test_a_null_byte_is_reported_where_it_is(src: str, line: int, column: int) -> None:
    for check in (load_filter, check_source):
        with pytest.raises(FilterSourceError, match="null byte") as err:
            check(src)
        assert (err.value.line, err.value.column) == (line, column)


def test_the_entrypoint_rule_is_the_same_for_a_name_bound_at_run_time() -> None:
    src = "import sys\nif sys.platform:\n    def a(alert):\n        return True\n\ndef b(alert):\n    return False\n"
    with pytest.raises(FilterSourceError, match="several filters"):
        load_filter(src)
    check_source(src)  # a and b both possible: only the runner can tell, so admission lets it through
    assert load_filter(src, "a").name == check_source(src, "a").name == "a"
    with pytest.raises(FilterSourceError, match="not defined"):
        check_source(src, "c")
