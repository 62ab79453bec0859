"""Operator configuration from environment variables (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of the operator.

    Environment variables:
        ALERTFILTER_OPERATOR_RUNNER_IMAGE: image of the filter-runner (default ``alertfilter-runner:0.1.0``).
        ALERTFILTER_OPERATOR_RUNNER_PULL_POLICY: its imagePullPolicy (default ``IfNotPresent``).
        ALERTFILTER_OPERATOR_SCHEMA_REGISTRY: schema registry URL handed to runners (the usual setting).
        ALERTFILTER_OPERATOR_SCHEMA_DIR: instead, a directory of .avsc files as the runners see it
            (an image or volume path; the local stack uses a local folder).
        ALERTFILTER_OPERATOR_NAMESPACES: comma-separated namespaces to watch for AlertFilters (default: all).
        ALERTFILTER_OPERATOR_WEBHOOK: ``local`` (serve on 127.0.0.1, announced by URL: development with a
            local API server), ``service`` (in-cluster: serve on 0.0.0.0 behind
            ALERTFILTER_OPERATOR_WEBHOOK_SERVICE), or ``off`` (default ``local``).
        ALERTFILTER_OPERATOR_WEBHOOK_PORT: port the webhook server listens on (default 9443).
        ALERTFILTER_OPERATOR_WEBHOOK_SERVICE: ``namespace/name`` of the webhook Service (``service`` mode).
        ALERTFILTER_OPERATOR_HEALTH_PORT: port of the liveness endpoint ``/healthz`` (default 8081).
        ALERTFILTER_OPERATOR_RESYNC_SECONDS: how often each filter's children are re-applied and its
            status recomputed, s (default 300).
        ALERTFILTER_OPERATOR_RUNNER_STATUS_SECONDS: how often each filter's runner pods are asked for
            their status document (lag, last accepted alert, replays), s (default 30; 0: never).
        ALERTFILTER_OPERATOR_RUNNER_STATUS_PORT: the runner pods' port of that document (default 8080,
            their metrics port; tests point it elsewhere).
    """

    runner_image: str = "alertfilter-runner:0.1.0"
    runner_pull_policy: str = "IfNotPresent"
    schema_registry: str | None = None
    schema_dir: str | None = None
    namespaces: tuple[str, ...] = ()
    webhook: str = "local"
    webhook_port: int = 9443
    webhook_service: str | None = None
    health_port: int = 8081
    resync_seconds: float = 300.0
    runner_status_seconds: float = 30.0
    runner_status_port: int = 8080

    @property
    def schema_registry_port(self) -> int | None:
        """TCP port of the schema registry URL (its explicit port, else 443 for https, 80 for
        http), which the runners' NetworkPolicy must open; None without a registry."""
        if not self.schema_registry:
            return None
        u = urlparse(self.schema_registry)
        return u.port or (443 if u.scheme == "https" else 80)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        """Raises ValueError naming the variable whose value is wrong."""
        env = dict(os.environ if environ is None else environ)
        p = "ALERTFILTER_OPERATOR_"

        def num(name: str, default: float, kind: type[int] | type[float] = int) -> float:
            raw = env.get(p + name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{p}{name} must be a number, got {raw!r}") from None

        webhook = env.get(p + "WEBHOOK", "local")
        if webhook not in ("local", "service", "off"):
            raise ValueError(f"{p}WEBHOOK must be local, service or off, got {webhook!r}")
        service = env.get(p + "WEBHOOK_SERVICE") or None
        if webhook == "service" and (not service or "/" not in service):
            raise ValueError(f"{p}WEBHOOK_SERVICE must be namespace/name when {p}WEBHOOK=service")
        return cls(
            runner_image=env.get(p + "RUNNER_IMAGE", cls.runner_image),
            runner_pull_policy=env.get(p + "RUNNER_PULL_POLICY", cls.runner_pull_policy),
            schema_registry=env.get(p + "SCHEMA_REGISTRY") or None,
            schema_dir=env.get(p + "SCHEMA_DIR") or None,
            namespaces=tuple(n.strip() for n in env.get(p + "NAMESPACES", "").split(",") if n.strip()),
            webhook=webhook,
            webhook_port=int(num("WEBHOOK_PORT", 9443)),
            webhook_service=service,
            health_port=int(num("HEALTH_PORT", 8081)),
            resync_seconds=float(num("RESYNC_SECONDS", 300.0, float)),
            runner_status_seconds=float(num("RUNNER_STATUS_SECONDS", 30.0, float)),
            runner_status_port=int(num("RUNNER_STATUS_PORT", 8080)),
        )
