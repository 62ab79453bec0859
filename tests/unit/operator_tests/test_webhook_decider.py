"""The webhook admits the filters the runner loads (a base-class alias, a def inside an if,
``filter = lambda ...``), and refuses what loading would refuse for sure."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from alertfilter import load_filter
from alertfilter.api import FilterSourceError
from alertfilter_operator.webhook import validate_source

ALERT = {"diaSource": {"snr": 10.0, "visit": 1}, "diaSourceId": 1}

ADMITTED = {
    "base-class alias": (
        "from alertfilter import AlertFilter as Base\n\n"
        "class Bright(Base):\n    def filter(self, alert):\n        return alert['diaSource']['snr'] > 5\n"
    ),
    "def inside an if": (
        "import sys\n\nif sys.version_info >= (3, 8):\n"
        "    def bright(alert):\n        return alert['diaSource']['snr'] > 5\n"
    ),
    "filter = lambda": "filter = lambda alert: alert['diaSource']['snr'] > 5\n",
}


def _spec(spec: dict[str, Any]) -> kopf.Spec:
    return kopf.Body({"spec": spec}).spec


@pytest.mark.parametrize("source", ADMITTED.values(), ids=ADMITTED.keys())
def test_the_webhook_admits_what_the_runner_loads(source: str) -> None:
    assert load_filter(source)(ALERT) is True  # the runner loads and runs it
    validate_source(spec=_spec({"source": source}))  # so kubectl apply must not be refused


def test_the_webhook_still_refuses_what_loading_refuses() -> None:
    source = "from alertfilter import AlertFilter as Base\n\nclass Bright(Base):\n    def filter(self):\n        return True\n"
    with pytest.raises(FilterSourceError):
        load_filter(source)
    with pytest.raises(kopf.AdmissionError, match=r"line 4, column 5: Bright\.filter must take exactly one"):
        validate_source(spec=_spec({"source": source}))
