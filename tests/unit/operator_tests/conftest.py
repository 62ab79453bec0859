"""Typed inputs of the operator's pure builders: a filter and a pool as a user would write them."""

from __future__ import annotations

from typing import Any

import pytest

from alertfilter_operator.builders import FilterRef, PoolInfo
from alertfilter_operator.models import AlertFilterSpec, FilterPoolSpec

SOURCE = "def bright(alert):\n    return alert['diaSource']['snr'] > 5\n"


def pool_spec(**overrides: Any) -> FilterPoolSpec:
    """A FilterPool spec like examples/filterpool.yaml, with ``overrides`` merged at the top level."""
    spec: dict[str, Any] = {
        "nodeSelector": {"alerts.lsst.io/pool": "pool-a"},
        "tolerations": [{"key": "alerts.lsst.io/pool", "operator": "Equal", "value": "pool-a", "effect": "NoSchedule"}],
        "capacity": {"nodes": 2, "filtersPerNode": 50},
        "kafka": {"namespace": "kafka-a", "replicas": 3},
        "mirror": {"sourceBootstrapServers": "central-kafka-bootstrap.kafka.svc:9092", "topic": "alerts"},
    }
    spec.update(overrides)
    return FilterPoolSpec.model_validate(spec)


def filter_ref(name: str = "bright", namespace: str = "science", **spec: Any) -> FilterRef:
    return FilterRef(namespace, name, "uid-1", AlertFilterSpec.model_validate({"source": SOURCE, **spec}), "ab12")


@pytest.fixture
def pool() -> PoolInfo:
    return PoolInfo.from_spec("pool-a", pool_spec())


@pytest.fixture
def ref() -> FilterRef:
    return filter_ref()


def pool_body(name: str = "pool-a", **overrides: Any) -> dict[str, Any]:
    """A FilterPool as the API returns it (see :func:`pool_spec`)."""
    return {
        "apiVersion": "alerts.lsst.io/v1alpha1",
        "kind": "FilterPool",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
        "spec": pool_spec(**overrides).model_dump(by_alias=True),
    }


def namespace_body(name: str) -> dict[str, Any]:
    """A Namespace as the API returns it."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
