"""Fixtures of the modules that test what the operator reads from runner pods (limits, replays):
an operator asking every second, on the port of a fake runner the test serves on this host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .operator_harness import OperatorProcess


@pytest.fixture(scope="module")
def runner_port() -> int:
    from alertfilter_devstack.procs import free_port

    return free_port()


@pytest.fixture(scope="module")
def operator(apiserver: Any, tmp_path_factory: pytest.TempPathFactory, runner_port: int) -> Iterator[OperatorProcess]:
    """The operator, reading runner pods' status every second, on ``runner_port`` (the fake runner's)."""
    op = OperatorProcess(
        apiserver,
        tmp_path_factory.mktemp("operator"),
        ALERTFILTER_OPERATOR_RUNNER_STATUS_SECONDS="1",
        ALERTFILTER_OPERATOR_RUNNER_STATUS_PORT=str(runner_port),
    ).start()
    yield op
    op.stop()
