"""Fixtures of the operator tests: the operator as a process (one per test module, its webhook
served locally) and a fresh FilterPool with its own Kafka namespace per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .operator_harness import OperatorProcess, make_pool


@pytest.fixture(scope="module")
def operator(apiserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(apiserver, tmp_path_factory.mktemp("operator")).start()
    yield op
    op.stop()


@pytest.fixture
def pool(apiserver: Any, operator: OperatorProcess) -> tuple[str, str]:
    """(pool name, its Kafka namespace)."""
    return make_pool(apiserver)
