"""kopf handlers: each delegates to the module that does the work.

``kopf run -m alertfilter_operator.handlers --all-namespaces`` or ``python -m alertfilter_operator``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import kopf

from . import GROUP, VERSION, alertfilters, pools
from .config import OperatorConfig
from .kube import Kube
from .naming import MANAGED_BY, OWNER_KIND, OWNER_NAME, OWNER_NAMESPACE
from .state import State
from .webhook import ServiceWebhookServer, local_webhook_server, validate_source

_CONFIG = OperatorConfig.from_env()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Settings that kopf's production users tune (crate-operator, dask-kubernetes), and the shared state."""
    cfg = _CONFIG
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Reconnect watches well before load balancers drop idle connections; never hang forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    settings.batching.worker_limit = 200
    cert_dir = Path(tempfile.mkdtemp(prefix="alertfilter-webhook-"))
    if cfg.webhook == "local":
        settings.admission.server = local_webhook_server(cfg.webhook_port, cert_dir)
        settings.admission.managed = f"alertfilters.{GROUP}"
    elif cfg.webhook == "service":
        ns, name = cfg.webhook_service.split("/", 1)  # type: ignore[union-attr]
        settings.admission.server = ServiceWebhookServer(
            namespace=ns, name=name, port=cfg.webhook_port, cert_dir=cert_dir
        )
        settings.admission.managed = f"alertfilters.{GROUP}"
    memo.state = State(Kube(), cfg)
    logger.info("alert filter operator: runner image %s, webhook %s", cfg.runner_image, cfg.webhook)


@kopf.on.create(GROUP, VERSION, "alertfilters")
@kopf.on.update(GROUP, VERSION, "alertfilters", field="spec")
@kopf.on.resume(GROUP, VERSION, "alertfilters")
def reconcile_alertfilter(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, retry: int, **_: Any) -> None:
    alertfilters.reconcile(memo.state, dict(body), logger, retry)


@kopf.timer(
    GROUP,
    VERSION,
    "alertfilters",
    interval=_CONFIG.resync_seconds,
    initial_delay=_CONFIG.resync_seconds,
    idle=_CONFIG.resync_seconds,
)
def resync_alertfilter(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Re-apply children now and then: repairs drift (a child deleted or edited by hand)."""
    try:
        alertfilters.reconcile(memo.state, dict(body), logger)
    except (kopf.TemporaryError, kopf.PermanentError) as exc:
        logger.info("resync: %s", exc)


@kopf.on.delete(GROUP, VERSION, "alertfilters")
def delete_alertfilter(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    alertfilters.delete(memo.state, dict(body), logger)


@kopf.on.event(
    "apps",
    "v1",
    "deployments",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "filter-runner"},
)
def runner_changed(body: kopf.Body, memo: kopf.Memo, type: str | None, **_: Any) -> None:  # noqa: A002
    """A runner Deployment changed: refresh its AlertFilter's RunnerReady and Ready."""
    owner = next((o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == "AlertFilter"), None)
    if owner and getattr(memo, "state", None) is not None:
        alertfilters.refresh_status(memo.state, body["metadata"]["namespace"], owner["name"])


@kopf.on.event(
    "",
    "v1",
    "pods",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "filter-runner"},
)
def runner_pod_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A runner pod changed (crashed, restarted): refresh RunnerReady so it says why."""
    name = (body["metadata"].get("labels") or {}).get("alerts.lsst.io/filter")
    if name and getattr(memo, "state", None) is not None:
        alertfilters.refresh_status(memo.state, body["metadata"]["namespace"], name)


@kopf.on.event("kafka.strimzi.io", "v1", "kafkatopics", labels={OWNER_KIND: "AlertFilter"})
def topic_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A filter's KafkaTopic changed (Strimzi set Ready): refresh the AlertFilter's TopicReady and Ready."""
    labels = body["metadata"].get("labels") or {}
    if getattr(memo, "state", None) is not None and labels.get(OWNER_NAMESPACE) and labels.get(OWNER_NAME):
        alertfilters.refresh_status(memo.state, labels[OWNER_NAMESPACE], labels[OWNER_NAME])


@kopf.on.create(GROUP, VERSION, "filterpools")
@kopf.on.update(GROUP, VERSION, "filterpools", field="spec")
@kopf.on.resume(GROUP, VERSION, "filterpools")
def reconcile_filterpool(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    pools.reconcile(memo.state, dict(body), logger)


@kopf.on.delete(GROUP, VERSION, "filterpools")
def delete_filterpool(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    pools.delete(memo.state, dict(body), logger)


@kopf.on.event("kafka.strimzi.io", "v1", "kafkas", labels={OWNER_KIND: "FilterPool"})
@kopf.on.event("kafka.strimzi.io", "v1", "kafkamirrormaker2s", labels={OWNER_KIND: "FilterPool"})
def pool_child_changed(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """The pool's Kafka or mirror changed: refresh the FilterPool's conditions; when the Kafka's
    published bootstrap address changed, re-reconcile the pool's filters so their runners follow."""
    name = (body["metadata"].get("labels") or {}).get(OWNER_NAME)
    state = getattr(memo, "state", None)
    if not name or state is None:
        return
    if pools.refresh_pool_status(state, name):
        with state.placement_lock:
            keys = [k for k, (p, _) in state.placements.items() if p == name]
        for ns, fname in keys:
            af = state.kube.get("AlertFilter", fname, ns)
            if af is not None:
                try:
                    alertfilters.reconcile(state, af, logger)
                except (kopf.TemporaryError, kopf.PermanentError) as exc:
                    logger.info("re-reconcile of %s/%s: %s", ns, fname, exc)


if _CONFIG.webhook != "off":  # kopf refuses admission handlers without a server
    kopf.on.validate(GROUP, VERSION, "alertfilters", id="source", operations=["CREATE", "UPDATE"])(validate_source)
