"""Write and delete only what a filter owns: ownership is checked, never assumed from a name.

A child in the owner's namespace names its owner in ``ownerReferences`` (the controller); a child
in a pool's Kafka namespace, where ownerReferences cannot point across namespaces, in the
``alerts.lsst.io/owner-uid`` label. An object found under a child's name with another owner (or
none) is never overwritten or deleted: the filter is told of the conflict instead.
"""

from __future__ import annotations

from typing import Any

from .kube import Kube
from .naming import OWNER_UID


class NameConflict(Exception):
    """An object the filter would write already exists and is not the filter's; ``str()`` says which.

    Attributes:
        kind: the kind of the object in the way (``KafkaTopic``, ``Deployment``...).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def owner_uid(obj: dict[str, Any]) -> str | None:
    """The uid of ``obj``'s owner: its controller ownerReference, else its owner-uid label; None when neither."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return (meta.get("labels") or {}).get(OWNER_UID)


def conflict(existing: dict[str, Any] | None, owner: str) -> str | None:
    """Why ``existing`` may not be written for the owner of uid ``owner``, or None when it may
    (it does not exist, or the owner owns it)."""
    if existing is None:
        return None
    held_by = owner_uid(existing)
    if held_by == owner:
        return None
    meta = existing.get("metadata") or {}
    where = f"{existing.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name')}".replace(" /", " ")
    if meta.get("deletionTimestamp"):
        return f"{where} of an earlier object of this name is still being deleted"
    if held_by:
        return f"{where} already exists and belongs to another object"
    return f"{where} already exists and was not created for this filter"


def apply_owned(kube: Kube, obj: dict[str, Any], owner: str) -> dict[str, Any]:
    """Server-side apply ``obj`` unless an object of its name exists that ``owner`` does not own.

    Raises:
        NameConflict: the object exists with another owner or none.
    """
    meta = obj["metadata"]
    why = conflict(kube.get(obj["kind"], meta["name"], meta.get("namespace")), owner)
    if why:
        raise NameConflict(why, obj["kind"])
    return kube.apply(obj)


def delete_owned(kube: Kube, kind: str, name: str, namespace: str | None, owner: str) -> bool:
    """Delete the object when ``owner`` owns it; True when something was deleted.

    The delete carries the object's uid as a precondition, so an object re-created under the same
    name between the check and the delete is left alone.
    """
    existing = kube.get(kind, name, namespace)
    if existing is None or owner_uid(existing) != owner:
        return False
    return kube.delete(kind, name, namespace, uid=existing["metadata"].get("uid"))
