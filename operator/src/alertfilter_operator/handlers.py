"""kopf handlers: registrations only, each delegating to the module that does the work.

``python -m alertfilter_operator`` (or ``kopf run -m alertfilter_operator.handlers``). Importing
this module reads no configuration: the startup handler loads it into kopf's ``memo``.

- startup: settings kopf's production users tune, the configuration, the API client, the webhook;
  cleanup: closes the client and removes the webhook's certificates.
- ``placements``: a kopf index of which filter runs in which pool, from the filters' ``status.pool``.
- AlertFilter: create/update/resume reconcile, delete, a resync daemon, the source webhook, and
  refreshes of its status when its Deployment, pods or KafkaTopics change.
- FilterPool: create/update/resume reconcile, delete, refreshes when its Kafka or mirror change, and
  its filters re-reconciled when its defaultLimits change.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any

import kopf

from . import GROUP, VERSION, alertfilters, observe, pools
from .admission import validate_contract, validate_image
from .config import OperatorConfig
from .kube import Kube
from .naming import FILTER_LABEL, MANAGED_BY, OWNER_KIND, OWNER_NAME, OWNER_NAMESPACE
from .persistence import HashedSourceDiffBase
from .placement import FilterKey, Placement, PlacementIndex, placement_of
from .state import State
from .webhook import (
    ServiceWebhookServer,
    local_webhook_server,
    no_webhook_server,
    validate_positions,
    validate_source,
)

#: Labels of the runner Deployments and pods the operator creates (what its event handlers watch).
RUNNER_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "filter-runner"}
#: Threads reading runner pods' status documents (State.status_executor): runners answer in
#: milliseconds, so 4 threads serve hundreds of filters per 30 s round; a pod that does not costs
#: one of them at most runner_status.FETCH_TIMEOUT_S, and never a thread of the reconciles.
STATUS_READERS = 4
#: Default of the ``placements`` argument. kopf always passes the index (by its name) to every
#: handler; the default is there because kopf's handler protocols do not know the indices.
NO_PLACEMENTS: PlacementIndex = MappingProxyType({})


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Load the configuration (the one ``__main__`` validated, else the environment), tune kopf as
    its production users do (crate-operator, dask-kubernetes), and keep the shared state in ``memo``.

    Raises:
        ValueError: an ``ALERTFILTER_OPERATOR_*`` variable has a wrong value (without ``__main__``).
    """
    config: OperatorConfig = memo.get("config") or OperatorConfig.from_env()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = HashedSourceDiffBase(prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Reconnect watches well before load balancers drop idle connections; never hang forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING  # only warnings and errors of handlers become Events
    settings.execution.max_workers = 16
    settings.queueing.worker_limit = 200
    cert_dir = None
    if config.webhook == "off":
        settings.admission.server = no_webhook_server
    else:
        cert_dir = Path(tempfile.mkdtemp(prefix="alertfilter-webhook-"))
        if config.webhook == "local":
            settings.admission.server = local_webhook_server(config.webhook_port, cert_dir)
        else:
            assert config.webhook_service is not None  # OperatorConfig.from_env guarantees it in service mode
            ns, name = config.webhook_service.split("/", 1)
            settings.admission.server = ServiceWebhookServer(
                namespace=ns, name=name, port=config.webhook_port, cert_dir=cert_dir
            )
        settings.admission.managed = f"alertfilters.{GROUP}"
    status_executor = ThreadPoolExecutor(max_workers=STATUS_READERS, thread_name_prefix="runner-status")
    memo.state = State(
        Kube(), config, executor=settings.execution.executor, status_executor=status_executor, cert_dir=cert_dir
    )
    logger.info("alert filter operator: runner image %s, webhook %s", config.runner_image, config.webhook)


@kopf.on.cleanup()
def close(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Close the API client's connection pool and remove the webhook's certificates."""
    state: State | None = memo.get("state")
    if state is None:
        return
    state.kube.api.close()
    if state.status_executor is not None:
        state.status_executor.shutdown(wait=False, cancel_futures=True)
    if state.cert_dir is not None:
        shutil.rmtree(state.cert_dir, ignore_errors=True)
    logger.info("alert filter operator: stopped")


@kopf.index(GROUP, VERSION, "alertfilters")
def placements(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any
) -> dict[FilterKey, Placement]:
    """``{(namespace, name): (pool, runner pods)}`` for each placed filter (see ``placement.placement_of``)."""
    return placement_of(namespace or "", name, spec, status, meta)


# --- AlertFilter ---------------------------------------------------------------------------------
@kopf.on.create(GROUP, VERSION, "alertfilters")
@kopf.on.update(GROUP, VERSION, "alertfilters", field="spec")
@kopf.on.resume(GROUP, VERSION, "alertfilters")
def reconcile_alertfilter(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int,
    placements: PlacementIndex = NO_PLACEMENTS,
    **_: Any,
) -> None:
    """Validate, place, apply the children, write the status (``alertfilters.reconcile``)."""
    alertfilters.reconcile(memo.state, dict(body), logger, placements, retry)


@kopf.daemon(GROUP, VERSION, "alertfilters", id="resync", cancellation_timeout=10)
async def resync_alertfilter(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    placements: PlacementIndex = NO_PLACEMENTS,
    **_: Any,
) -> None:
    """Every ``resyncSeconds`` (configuration) re-apply the filter's children: repairs drift (a child
    deleted or edited by hand). A daemon rather than a timer because the interval is configuration,
    known only at startup; the reconcile itself runs in kopf's worker threads like the sync handlers."""
    state: State = memo.state
    assert namespace is not None  # AlertFilters are namespaced
    loop = asyncio.get_running_loop()
    while not await stopped.wait(state.config.resync_seconds):
        resync = functools.partial(alertfilters.resync, state, namespace, name, logger, placements)
        await loop.run_in_executor(state.executor, resync)


@kopf.daemon(GROUP, VERSION, "alertfilters", id="runner-status", cancellation_timeout=10)
async def observe_runners(
    stopped: kopf.DaemonStopped, namespace: str | None, name: str, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Every ``runnerStatusSeconds`` (configuration; 0: never) read the filter's runner pods' status
    documents into its status (``observe.observe``: lag, last accepted alert, replays)."""
    state: State = memo.state
    assert namespace is not None  # AlertFilters are namespaced
    interval = state.config.runner_status_seconds
    if interval <= 0:
        return
    loop = asyncio.get_running_loop()
    while not await stopped.wait(interval):
        read = functools.partial(observe.observe, state, namespace, name, logger)
        await loop.run_in_executor(state.status_executor, read)


@kopf.on.delete(GROUP, VERSION, "alertfilters")
def delete_alertfilter(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, placements: PlacementIndex = NO_PLACEMENTS, **_: Any
) -> None:
    """Remove the filter's children, in its namespace and the Kafka namespace."""
    alertfilters.delete(memo.state, dict(body), logger, placements)


# A source that does not compile is refused at `kubectl apply` (with webhook=off, the server never serves),
# and so is a filter that would take a topic or leave a pool it may not (admission.py).
kopf.on.validate(GROUP, VERSION, "alertfilters", id="source", operations=["CREATE", "UPDATE"])(validate_source)
kopf.on.validate(GROUP, VERSION, "alertfilters", id="contract", operations=["CREATE", "UPDATE"])(validate_contract)
# A spec.image that the filter's FilterPool does not allow (its spec.allowedImages) is refused too.
kopf.on.validate(GROUP, VERSION, "alertfilters", id="image", operations=["CREATE", "UPDATE"])(validate_image)
kopf.on.validate(GROUP, VERSION, "alertfilters", id="positions", operations=["CREATE", "UPDATE"])(validate_positions)


@kopf.on.event("apps", "v1", "deployments", labels=RUNNER_LABELS)
def runner_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A runner Deployment changed: refresh its AlertFilter's RunnerReady and Ready."""
    owner = next((o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == "AlertFilter"), None)
    if owner and "state" in memo:
        alertfilters.refresh_status(memo.state, body["metadata"]["namespace"], owner["name"])


@kopf.on.event("", "v1", "pods", labels=RUNNER_LABELS)
def runner_pod_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A runner pod changed (crashed, restarted): refresh RunnerReady so it says why."""
    name = (body["metadata"].get("labels") or {}).get(FILTER_LABEL)
    if name and "state" in memo:
        alertfilters.refresh_status(memo.state, body["metadata"]["namespace"], name)


@kopf.on.event("kafka.strimzi.io", "v1", "kafkatopics", labels={OWNER_KIND: "AlertFilter"})
def topic_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A filter's KafkaTopic changed (Strimzi set Ready): refresh the AlertFilter's TopicReady and Ready."""
    labels = body["metadata"].get("labels") or {}
    if "state" in memo and labels.get(OWNER_NAMESPACE) and labels.get(OWNER_NAME):
        alertfilters.refresh_status(memo.state, labels[OWNER_NAMESPACE], labels[OWNER_NAME])


# --- FilterPool ----------------------------------------------------------------------------------
@kopf.on.create(GROUP, VERSION, "filterpools")
@kopf.on.update(GROUP, VERSION, "filterpools", field="spec")
@kopf.on.resume(GROUP, VERSION, "filterpools")
def reconcile_filterpool(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, placements: PlacementIndex = NO_PLACEMENTS, **_: Any
) -> None:
    """Apply the pool's Kafka, node pool, mirror user and mirror; write its status (``pools.reconcile``)."""
    pools.reconcile(memo.state, dict(body), logger, placements)


@kopf.on.update(GROUP, VERSION, "filterpools", field="spec.defaultLimits")
def pool_limits_changed(
    name: str, memo: kopf.Memo, logger: kopf.Logger, placements: PlacementIndex = NO_PLACEMENTS, **_: Any
) -> None:
    """The pool's ``spec.defaultLimits`` changed: re-reconcile its filters, so their runners get the
    limits they inherit (a filter's own ``spec.limits`` fields still win)."""
    alertfilters.follow_pool(memo.state, name, logger, placements)


@kopf.on.update(GROUP, VERSION, "filterpools", field="spec.allowedImages")
def pool_images_changed(
    name: str, memo: kopf.Memo, logger: kopf.Logger, placements: PlacementIndex = NO_PLACEMENTS, **_: Any
) -> None:
    """The pool's ``spec.allowedImages`` changed: re-reconcile its filters at once, so that a runner
    whose image the pool no longer allows stops (ImageNotAllowed) and one allowed again starts."""
    alertfilters.follow_pool(memo.state, name, logger, placements)


@kopf.on.delete(GROUP, VERSION, "filterpools")
def delete_filterpool(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, placements: PlacementIndex = NO_PLACEMENTS, **_: Any
) -> None:
    """Remove the pool's children once no filter runs in it (retried until then)."""
    pools.delete(memo.state, dict(body), logger, placements)


@kopf.on.event("kafka.strimzi.io", "v1", "kafkas", labels={OWNER_KIND: "FilterPool"})
@kopf.on.event("kafka.strimzi.io", "v1", "kafkamirrormaker2s", labels={OWNER_KIND: "FilterPool"})
@kopf.on.event("kafka.strimzi.io", "v1", "kafkatopics", labels={OWNER_KIND: "FilterPool"})  # the lean topic
@kopf.on.event("apps", "v1", "deployments", labels={OWNER_KIND: "FilterPool"})  # the lean producer
def pool_child_changed(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, placements: PlacementIndex = NO_PLACEMENTS, **_: Any
) -> None:
    """The pool's Kafka, mirror or lean stream changed: refresh the FilterPool's conditions; when the Kafka's
    published bootstrap address changed, re-reconcile the pool's filters so their runners follow."""
    name = (body["metadata"].get("labels") or {}).get(OWNER_NAME)
    if not name or "state" not in memo:
        return
    if pools.refresh_pool_status(memo.state, name, placements):
        alertfilters.follow_pool(memo.state, name, logger, placements)
