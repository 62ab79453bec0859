"""How kopf records the spec it last handled: with the filter's source replaced by its hash.

kopf keeps the last handled spec in an annotation, to tell a change from a resync. All annotations
of an object together may hold 256 KiB, and ``kubectl apply`` already keeps one copy of the whole
object there; a second copy of a large source would push the object past the limit, after which
no patch of kopf's could be written, its finalizer included, and the filter could not be deleted.
A hash tells a changed source as well as the source does.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from typing import Any, cast

import kopf

#: Where the hash of ``spec.source`` stands in the recorded spec.
HASHED = "sha256:"


class HashedSourceDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base storage, recording ``spec.source`` as ``sha256:<hex>``."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        """The essence kopf compares and stores, with the source hashed (see the module's docstring)."""
        essence = super().build(body=body, extra_fields=extra_fields)
        spec = cast("dict[str, Any]", essence).get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("source"), str):
            essence = copy.deepcopy(essence)
            source = essence["spec"]["source"]
            digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
            essence["spec"]["source"] = HASHED + digest
        return essence
