"""One status writer for both custom resources (AlertFilter and FilterPool).

A :class:`StatusUpdate` starts from the status a body carries, takes condition changes and other
fields, posts a Kubernetes Event for every condition transition, and writes the status once, as
a merge patch of the status subresource, only when something but transition times changed (so
a resync of an unchanged resource writes nothing and wakes no watcher).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .conditions import TRUE, get_condition, ready_from, set_condition, status_unchanged
from .kube import Kube


class StatusUpdate:
    """The new status of one AlertFilter or FilterPool.

    Attributes:
        conditions: the conditions as they will be written (a copy of the body's, then changed by :meth:`set`).
        fields: other status fields to write (``pool``, ``outputTopic``, ``capacity``...); a value of
            None removes the field (merge-patch semantics).
        generation: the body's ``metadata.generation``, written as ``observedGeneration`` of the
            status and of every condition set.
    """

    def __init__(self, kube: Kube, body: dict[str, Any]) -> None:
        """``body``: the resource as the API returns it (``kind`` and ``metadata`` are used)."""
        self.kube = kube
        self.body = body
        self.old: dict[str, Any] = dict(body.get("status") or {})
        self.conditions: list[dict[str, Any]] = [dict(c) for c in self.old.get("conditions") or []]
        self.fields: dict[str, Any] = {}
        self.generation: int | None = body["metadata"].get("generation")

    def get(self, type_: str) -> dict[str, Any] | None:
        """The condition of ``type_`` as it stands now, or None."""
        return get_condition(self.conditions, type_)

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        """Set one condition; on a status transition post an Event (``Normal`` when it became True,
        ``Warning`` otherwise) saying ``<type>=<status>: <message>``."""
        self.conditions, changed = set_condition(self.conditions, type_, status, reason, message, self.generation)
        if changed:
            self.kube.post_event(
                self.body, "Normal" if status == TRUE else "Warning", reason, f"{type_}={status}: {message}"
            )

    def set_ready(self, parts: Iterable[str], ready_message: str) -> None:
        """Set ``Ready`` from the ``parts`` conditions (see :func:`.conditions.ready_from`)."""
        self.set("Ready", *ready_from(self.conditions, parts, ready_message))

    def write(self) -> None:
        """Merge-patch the status subresource when it changed; nothing when the object is gone."""
        meta = self.body["metadata"]
        new = {**self.fields, "conditions": self.conditions, "observedGeneration": self.generation}
        if status_unchanged(self.old, new):
            return
        self.kube.patch_status(self.body["kind"], meta["name"], meta.get("namespace"), new)
