"""The kopf wiring: configuration loaded at startup (never at import), cleaned up at exit, and the
resync every ``resyncSeconds``."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from typing import Any

import kopf
import pytest

from alertfilter_operator import alertfilters, handlers
from alertfilter_operator.config import OperatorConfig
from alertfilter_operator.state import State
from alertfilter_operator.webhook import no_webhook_server

from .fake_kube import FakeKube

LOG = logging.getLogger("test")
# kopf's decorators type the handlers as its callback protocols (every kwarg kopf may pass); the
# tests call them with the few they use.
configure: Any = handlers.configure
close: Any = handlers.close
resync_alertfilter: Any = handlers.resync_alertfilter


def test_importing_the_handlers_reads_no_configuration() -> None:
    env = {**os.environ, "ALERTFILTER_OPERATOR_RESYNC_SECONDS": "soon", "ALERTFILTER_OPERATOR_WEBHOOK": "maybe"}
    r = subprocess.run(
        [sys.executable, "-c", "import alertfilter_operator.handlers"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_a_wrong_variable_stops_the_operator_before_it_connects() -> None:
    env = {**os.environ, "ALERTFILTER_OPERATOR_RESYNC_SECONDS": "soon", "KUBECONFIG": "/nonexistent"}
    r = subprocess.run(
        [sys.executable, "-m", "alertfilter_operator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "alertfilter-operator: ALERTFILTER_OPERATOR_RESYNC_SECONDS must be a number, got 'soon'"


@pytest.fixture
def fake_kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    kube = FakeKube()
    monkeypatch.setattr(handlers, "Kube", lambda: kube)
    return kube


def test_startup_keeps_the_configuration_and_client_in_memo_and_cleanup_closes_them(fake_kube: FakeKube) -> None:
    config = OperatorConfig(webhook="off", resync_seconds=42)
    settings, memo = kopf.OperatorSettings(), kopf.Memo(config=config)
    configure(settings=settings, memo=memo, logger=LOG)
    state: State = memo.state
    assert state.config is config and state.kube is fake_kube and state.cert_dir is None
    assert settings.admission.server is no_webhook_server and settings.admission.managed is None
    assert settings.persistence.finalizer == "alerts.lsst.io/finalizer"
    close(memo=memo, logger=LOG)
    assert fake_kube.fake_api.closed


def test_startup_reads_the_environment_when_no_entry_point_did(
    fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTFILTER_OPERATOR_WEBHOOK", "local")
    monkeypatch.setenv("ALERTFILTER_OPERATOR_RUNNER_IMAGE", "runner:7")
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    configure(settings=settings, memo=memo, logger=LOG)
    state: State = memo.state
    assert state.config.runner_image == "runner:7"
    assert settings.admission.managed == "alertfilters.alerts.lsst.io"
    assert state.cert_dir is not None and (state.cert_dir / "cert.pem").is_file()
    close(memo=memo, logger=LOG)
    assert not state.cert_dir.exists()


class _Stopped:
    """kopf's ``stopped`` flag for a daemon that is stopped after ``rounds`` waits."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.timeouts: list[float] = []

    async def _wait(self) -> bool:
        self.rounds -= 1
        return self.rounds < 0

    def wait(self, timeout: float) -> Any:
        self.timeouts.append(timeout)
        return self._wait()


def test_the_resync_daemon_reconciles_every_resync_seconds_until_stopped(
    fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(alertfilters, "resync", lambda state, ns, name, logger, index: calls.append((ns, name)))
    memo = kopf.Memo(state=State(fake_kube, OperatorConfig(resync_seconds=42)))
    stopped = _Stopped(rounds=2)
    daemon = resync_alertfilter(
        stopped=stopped,
        namespace="sci",
        name="f",
        memo=memo,
        logger=LOG,
        placements={},
    )
    asyncio.run(daemon)
    assert calls == [("sci", "f"), ("sci", "f")]
    assert stopped.timeouts == [42, 42, 42]
