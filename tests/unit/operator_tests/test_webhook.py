"""What `kubectl apply` answers for a filter whose source does not compile, and webhook=off."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from alertfilter_operator.webhook import no_webhook_server, validate_source

from .conftest import SOURCE


def _spec(spec: dict[str, Any]) -> kopf.Spec:
    """The ``spec`` kwarg kopf passes: a view of the reviewed object's spec."""
    return kopf.Body({"spec": spec}).spec


def test_a_source_that_does_not_compile_is_refused_with_line_and_column() -> None:
    with pytest.raises(kopf.AdmissionError) as err:
        validate_source(spec=_spec({"source": "def f(alert):\n    return alert['x'\n"}))
    assert err.value.code == 422
    assert str(err.value).startswith("spec.source: line 2, column")


def test_several_filters_without_an_entrypoint_name_the_field_to_set() -> None:
    source = "def a(alert):\n    return True\n\ndef b(alert):\n    return False\n"
    with pytest.raises(kopf.AdmissionError, match=r"spec.source: line 4, column 1: .*spec\.entrypoint"):
        validate_source(spec=_spec({"source": source}))
    validate_source(spec=_spec({"source": source, "entrypoint": "b"}))  # accepted


def test_a_valid_source_is_accepted() -> None:
    validate_source(spec=_spec({"source": SOURCE}))


def test_with_the_webhook_off_nothing_is_ever_announced() -> None:
    async def first_announcement() -> Any:
        async for config in no_webhook_server(lambda *_, **__: None):  # type: ignore[arg-type]
            return config
        return None

    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(first_announcement(), timeout=0.2))
