"""What the handlers share, kept in kopf's ``memo`` by the startup handler: the API client, the
configuration, per-object locks, and the placements decided but not yet seen in the index."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from .config import OperatorConfig
from .kube import Kube
from .placement import FilterKey, Placement, PlacementIndex, merge_placements, snapshot

#: How long a placement decision may wait for the watch stream to show it, s: the status write
#: that confirms it takes well under a second; a filter deleted before that never confirms it.
PENDING_TTL_S = 300.0


@dataclass
class State:
    """The operator's in-process state (one per operator process).

    Attributes:
        kube: the API client.
        config: the configuration loaded at startup.
        executor: where the async resync daemons run the (blocking) reconcile: kopf's own thread
            pool for sync handlers, so its ``max_workers`` bounds both; None for the loop's default.
        status_executor: where the runner-status daemons read the runner pods: a pool of its own,
            so pods that answer slowly (a filter's own image serves what it likes) delay only the
            status of filters, never a reconcile or an admission review; None for the loop's default.
        cert_dir: the webhook's certificate directory, removed at cleanup (None without webhook).
        pending: placements this operator decided that the watch stream has not brought back into
            the placement index yet (see :func:`.placement.merge_placements`); guarded by ``placement_lock``.
    """

    kube: Kube
    config: OperatorConfig
    executor: Executor | None = None
    status_executor: Executor | None = None
    cert_dir: Path | None = None
    pending: dict[FilterKey, Placement] = field(default_factory=dict)
    #: When each pending decision was first seen in the book (monotonic s).
    pending_since: dict[FilterKey, float] = field(default_factory=dict)
    placement_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Serialises the check that a topic is free with the writing of the KafkaTopic that takes it.
    claims_lock: threading.Lock = field(default_factory=threading.Lock)
    _locks: dict[tuple[str, str, str], threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, kind: str, namespace: str | None, name: str) -> threading.Lock:
        """A lock serialising reconcile and status refresh of one object (kopf runs a resource's
        handlers one at a time, but the event handlers of its children refresh it in parallel)."""
        with self._locks_guard:
            return self._locks[(kind, namespace or "", name)]

    def placement_book(self, index: PlacementIndex) -> Mapping[FilterKey, Placement]:
        """``{(namespace, name): (pool, runner pods)}`` of every placed filter: the index overlaid
        with the pending decisions. Call with ``placement_lock`` held.

        A pending decision the index has not confirmed within :data:`PENDING_TTL_S` is dropped: its
        filter was deleted before its status was written (no delete handler ran for it), and it
        must not hold a pool's room for ever."""
        now = time.monotonic()
        for key in [k for k in self.pending if k not in self.pending_since]:
            self.pending_since[key] = now
        for key, since in list(self.pending_since.items()):
            if key not in self.pending:
                del self.pending_since[key]
            elif now - since > PENDING_TTL_S:
                del self.pending[key], self.pending_since[key]
        return merge_placements(snapshot(index), self.pending)
