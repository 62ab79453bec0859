"""Shared fixtures: the real alerts, a real Kafka broker.

A fixture whose real part cannot start fails the test (never skips): a skipped test is a test
that did not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The shared real-alert folder: ``$ALERTFILTER_DATA``, default ``../shared/data``."""
    return Path(os.environ.get("ALERTFILTER_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def alerts_dir() -> Path:
    d = data_dir() / "alerts"
    if not (d / "rubin-v10_0-real-20.avro").is_file():
        pytest.fail(f"real alerts not found in {d}; set ALERTFILTER_DATA to the shared data folder")
    return d


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory):
    """A real single-node KRaft Kafka broker for the whole session."""
    from alertfilter_devstack.kafka import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - report why, then fail
        pytest.fail(f"the Kafka broker did not start: {exc}")
    yield broker
    broker.stop()


def install_crds(cp) -> None:
    """Install Strimzi's CRDs and the project's (see alertfilter_devstack.crds)."""
    from alertfilter_devstack.crds import install_crds as install

    try:
        install(cp)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory):
    """A real etcd + kube-apiserver for the whole session, with Strimzi's and the project's CRDs."""
    from alertfilter_devstack.controlplane import ControlPlane

    cp = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        cp.start()
        install_crds(cp)
    except Exception as exc:  # noqa: BLE001 - report why, then fail
        cp.stop()
        pytest.fail(f"the Kubernetes control plane did not start: {exc}")
    yield cp
    cp.stop()


@pytest.fixture
def namespace(apiserver, request) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", name)
    yield name
    apiserver.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests sharing the broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:10]}"
