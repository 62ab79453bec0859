"""Which image a filter's runner pods run (AlertFilter ``spec.image``), and whether its pool lets it
(FilterPool ``spec.allowedImages``). Pure: the admission webhook and the reconciler apply the same rule.

A custom image is code of the filter's group that runs as the runner, with that filter's Kafka
credentials (its KafkaUser's ACLs: read the pool's input, write its own topics) and nothing more:
the pod's restricted security context, no service-account token, and the NetworkPolicy that lets it
reach only the pool's Kafka and DNS. A pool's operators say which images they trust with
``spec.allowedImages``, prefixes of the image reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def runner_image_of(spec_image: str | None, runner_image: str) -> str:
    """The image the runner pods run: ``spec.image``, else the operator's runner image."""
    return spec_image or runner_image


def image_allowed(image: str, allowed: Sequence[str] | None, runner_image: str) -> bool:
    """True when ``image`` may run in a pool whose ``spec.allowedImages`` is ``allowed``: the
    operator's own runner image always; any image when the pool sets no list; else an image that
    starts with one of its prefixes."""
    if image == runner_image or allowed is None:
        return True
    return any(prefix and image.startswith(prefix) for prefix in allowed)


def image_problem(image: str | None, pool: str, allowed: Sequence[str] | None, runner_image: str) -> str | None:
    """Why the filter's ``spec.image`` may not run in FilterPool ``pool``; None when it may (or names none)."""
    if not image or image_allowed(image, allowed, runner_image):
        return None
    if allowed:
        listed = ", ".join(repr(a) for a in allowed)
        how = f"its spec.allowedImages allows only images starting with {listed}"
    else:
        how = "its spec.allowedImages is empty: it runs only the operator's runner image"
    return (
        f"spec.image: {image!r} is not allowed in FilterPool {pool!r}: {how}. Use an allowed image (built FROM "
        "the runner image), leave spec.image out, or ask the pool's operators to allow it"
    )


def allowed_images(pool: Mapping[str, Any] | None) -> list[str] | None:
    """A FilterPool body's ``spec.allowedImages`` (None: unset, any image)."""
    allowed = ((pool or {}).get("spec") or {}).get("allowedImages")
    return None if allowed is None else [str(a) for a in allowed]
