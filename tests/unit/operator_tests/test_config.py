"""The operator's configuration, from the ALERTFILTER_OPERATOR_* variables the Helm chart sets."""

from __future__ import annotations

import re

import pytest

from alertfilter_operator.config import OperatorConfig


def test_defaults_watch_every_namespace_with_the_local_webhook() -> None:
    cfg = OperatorConfig.from_env({})
    assert (cfg.namespaces, cfg.webhook, cfg.webhook_port, cfg.health_port) == ((), "local", 9443, 8081)
    assert (cfg.runner_image, cfg.resync_seconds) == ("alertfilter-runner:0.1.0", 300.0)


def test_variables_as_the_chart_sets_them() -> None:
    cfg = OperatorConfig.from_env(
        {
            "ALERTFILTER_OPERATOR_NAMESPACES": "team-a, team-b,,kafka",
            "ALERTFILTER_OPERATOR_WEBHOOK": "service",
            "ALERTFILTER_OPERATOR_WEBHOOK_SERVICE": "alerts/afo-webhook",
            "ALERTFILTER_OPERATOR_RESYNC_SECONDS": "120",
            "ALERTFILTER_OPERATOR_SCHEMA_REGISTRY": "https://registry.example.org/",
        }
    )
    assert cfg.namespaces == ("team-a", "team-b", "kafka")
    assert (cfg.webhook, cfg.webhook_service, cfg.resync_seconds) == ("service", "alerts/afo-webhook", 120.0)
    # the runners' NetworkPolicy opens the registry's port: 443 for https without an explicit one
    assert cfg.schema_registry_port == 443
    assert OperatorConfig(schema_registry="http://r:8081").schema_registry_port == 8081
    assert OperatorConfig().schema_registry_port is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ALERTFILTER_OPERATOR_WEBHOOK": "yes"},
            "ALERTFILTER_OPERATOR_WEBHOOK must be local, service or off, got 'yes'",
        ),
        (
            {"ALERTFILTER_OPERATOR_WEBHOOK": "service"},
            "ALERTFILTER_OPERATOR_WEBHOOK_SERVICE must be namespace/name when ALERTFILTER_OPERATOR_WEBHOOK=service",
        ),
        ({"ALERTFILTER_OPERATOR_HEALTH_PORT": "80a"}, "ALERTFILTER_OPERATOR_HEALTH_PORT must be a number, got '80a'"),
    ],
)
def test_a_wrong_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        OperatorConfig.from_env(env)
