"""Which FilterPool an AlertFilter runs in, and what it needs of it: the placement decision (kept
as pending until the index shows it), the pool's image rules (``spec.allowedImages``), and its
Kafka's bootstrap address. Used by the AlertFilter reconciler (``alertfilters.py``)."""

from __future__ import annotations

from .builders import PoolInfo
from .images import allowed_images, image_allowed, image_problem
from .models import AlertFilterSpec, FilterPoolSpec, pool_kafka_name
from .placement import PlacementIndex, choose_pool, filter_weight, pool_loads
from .state import State


def place(state: State, index: PlacementIndex, key: tuple[str, str], spec: AlertFilterSpec, current: str | None) -> str:
    """The filter's pool: where it already is (the book, or its ``status.pool``) unless ``spec.pool``
    names another, else a new choice. Records the decision as pending (see :meth:`State.placement_book`).

    Raises:
        Unschedulable: no pool can take it.
    """
    weight = filter_weight(spec.replicas)
    with state.placement_lock:
        book = state.placement_book(index)
        placed = book.get(key)
        if placed is not None and spec.pool in (None, placed[0]):
            pool = placed[0]
        elif current and spec.pool in (None, current):
            pool = current
        else:
            pools = state.kube.list("FilterPool")
            if spec.image and not spec.pool:  # only pools that allow its image (FilterPool spec.allowedImages)
                runner_image = state.config.runner_image
                pools = [p for p in pools if image_allowed(spec.image, allowed_images(p), runner_image)]
            pool = choose_pool(pool_loads(pools, book, exclude=key), weight, spec.pool)
        state.pending[key] = (pool, weight)
        return pool


def image_refused(state: State, image: str | None, pool_name: str) -> str | None:
    """Why FilterPool ``pool_name`` may not run ``spec.image`` (its ``spec.allowedImages``); None when
    it may, when the filter names no image, or when the pool does not exist (PoolNotFound says so)."""
    body = state.kube.get("FilterPool", pool_name) if image else None
    return image_problem(image, pool_name, allowed_images(body), state.config.runner_image) if body else None


def pool_info(state: State, pool_name: str) -> PoolInfo:
    """What the filter needs of its pool, with the bootstrap address Strimzi published.

    Raises:
        LookupError: the FilterPool does not exist.
    """
    pool_body = state.kube.get("FilterPool", pool_name)
    if pool_body is None:
        raise LookupError(f"FilterPool {pool_name!r} does not exist")
    pool_spec = FilterPoolSpec.model_validate(pool_body.get("spec") or {})
    kafka = state.kube.get("Kafka", pool_kafka_name(pool_name, pool_spec), pool_spec.kafka.namespace)
    return PoolInfo.from_spec(pool_name, pool_spec, (kafka or {}).get("status"))
