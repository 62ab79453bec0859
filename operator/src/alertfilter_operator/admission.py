"""The admission side of the contract (:mod:`.contract`): ``kubectl apply`` of a filter that would
take another's topic, an input or internal topic, or move out of the pool it runs in, is refused
with the reason. The reconciler applies the same rules again, for filters admitted without it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from .contract import claims_of, name_prefix, output_topic_problem, pool_change_problem
from .images import allowed_images, image_allowed, image_problem
from .kube import Kube
from .state import State


def prefix_namespace(kube: Kube, namespace: str, spec: Mapping[str, Any]) -> list[str]:
    """``[<prefix>]`` when ``spec.output.topic`` is ``<prefix>.<...>`` and ``<prefix>`` is another
    namespace that exists, else ``[]``: the one namespace the prefix rule needs (a GET, not a list
    of every namespace, which the chart's RBAC does not grant)."""
    prefix = name_prefix(((spec.get("output") or {}).get("topic")) or "")
    return [prefix] if prefix and prefix != namespace and kube.get("Namespace", prefix) else []


def validate_contract(
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    **_: Any,
) -> None:
    """Refuse an AlertFilter whose output topic or pool it may not have.

    Lists every AlertFilter and FilterPool once per request (admission is rare; the reconciler's
    checks cost a labelled list instead).

    Raises:
        kopf.AdmissionError: ``spec.output.topic: ...`` or ``spec.pool: ...`` (HTTP 422).
    """
    state: State | None = memo.get("state")
    if state is None or not namespace or not name:
        return  # not started yet: the reconciler checks the same
    old_spec: Mapping[str, Any] = (old.get("spec") or {}) if old is not None else {}
    topic_changed = old is None or (old_spec.get("output") or {}).get("topic") != (spec.get("output") or {}).get(
        "topic"
    )
    pool_changed = old is not None and old_spec.get("pool") != spec.get("pool")
    if not topic_changed and not pool_changed:
        # Every other update (the operator's finalizer, annotations, a source edit) is let
        # through: a rule that a namespace or filter created since would now trigger must never
        # hold a running filter's updates, or its deletion.
        return
    kube = state.kube
    claims = claims_of(
        kube.list("AlertFilter"),
        kube.list("FilterPool"),
        prefix_namespace(kube, namespace, spec),
        exclude=(namespace, name),
    )
    problem = output_topic_problem(namespace, name, dict(spec), claims) if topic_changed else None
    if problem is None and old and pool_changed:
        old_pool = (old.get("spec") or {}).get("pool")
        problem = pool_change_problem(old_pool, spec.get("pool"), (old.get("status") or {}).get("pool"))
    if problem:
        raise kopf.AdmissionError(problem, code=422)


def validate_image(
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    old: kopf.Body | None = None,
    **_: Any,
) -> None:
    """Refuse an AlertFilter whose ``spec.image`` its FilterPool does not allow (``spec.allowedImages``).

    Checked when the image or the pool is set or changes: the pool named in ``spec.pool``, else the
    one the filter runs in (``status.pool``); a filter not placed yet needs one pool that allows it
    (the operator places it in such a pool).

    Raises:
        kopf.AdmissionError: ``spec.image: ...`` (HTTP 422).
    """
    state: State | None = memo.get("state")
    image = spec.get("image")
    if state is None or not namespace or not name or not image:
        return
    old_spec: Mapping[str, Any] = (old.get("spec") or {}) if old is not None else {}
    if old is not None and old_spec.get("image") == image and old_spec.get("pool") == spec.get("pool"):
        return  # every other update (a finalizer, the source...) is let through, as in validate_contract
    runner_image = state.config.runner_image
    pool_name = spec.get("pool") or ((old.get("status") or {}).get("pool") if old is not None else None)
    if pool_name:
        pool = state.kube.get("FilterPool", pool_name)
        if pool is None:
            return  # the reconciler says PoolNotFound
        problem = image_problem(image, pool_name, allowed_images(pool), runner_image)
        if problem:
            raise kopf.AdmissionError(problem, code=422)
        return
    pools = state.kube.list("FilterPool")
    if pools and not any(image_allowed(image, allowed_images(p), runner_image) for p in pools):
        names = ", ".join(sorted(p["metadata"]["name"] for p in pools))
        raise kopf.AdmissionError(
            f"spec.image: {image!r} is allowed in no FilterPool ({names}: see their spec.allowedImages); use an "
            "allowed image (built FROM the runner image), leave spec.image out, or ask the pools' operators to allow it",
            code=422,
        )
