"""Shared fixtures: the real alerts, a real Kafka broker.

A fixture whose real part cannot start fails the test (never skips): a skipped test is a test
that did not run.
"""

from __future__ import annotations

import os
import uuid
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


def strimzi_crds_dir() -> Path:
    """Strimzi's CRDs: ``$STRIMZI_CRDS_DIR``, default ``../shared/strimzi-crds``."""
    return Path(os.environ.get("STRIMZI_CRDS_DIR", ROOT.parent / "shared" / "strimzi-crds")).resolve()


def install_crds(cp) -> None:
    """Install Strimzi's CRDs and the project's, and wait until they are served."""
    crd_files = sorted(strimzi_crds_dir().glob("*-Crd-*.yaml"))
    if not crd_files:
        pytest.fail(f"Strimzi CRDs not found in {strimzi_crds_dir()}; set STRIMZI_CRDS_DIR")
    for f in [*crd_files, *sorted((ROOT / "crds").glob("*.yaml"))]:
        cp.kubectl("apply", "--server-side", "-f", str(f))
    import time

    deadline = time.monotonic() + 60
    # a CRD has no conditions for a moment after its creation; then the OpenAPI document
    # (kubectl explain) lags the CRDs a little
    while (cp.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all", check=False).returncode
           or cp.kubectl("explain", "alertfilter.spec", check=False).returncode):
        if time.monotonic() > deadline:
            pytest.fail("the API server never published the AlertFilter schema")
        time.sleep(0.5)


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
def namespace(apiserver, request) -> str:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", name)
    yield name
    apiserver.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests sharing the broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:10]}"
