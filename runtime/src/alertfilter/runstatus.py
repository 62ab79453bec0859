"""What a runner tells the operator: one JSON document, ``GET /status`` on the metrics port.

The operator reads it from every runner pod of a filter (its per-filter resync, straight to the
pod's IP; it needs no Kafka credential for that) and writes what it learns into the AlertFilter's
status: the consumer lag, the time of the last accepted alert, which replay each partition has
done. Any part of the runner may publish through the one :class:`RunnerStatus` of its process:

- a named value, fixed (:meth:`RunnerStatus.set`) or computed when the document is asked for
  (:meth:`RunnerStatus.provide`); JSON values only;
- fields of an assigned input partition (:meth:`RunnerStatus.update_partition`), listed only
  while the partition is assigned to this runner.

The document (``format`` 1)::

    {"format": 1, "time": "2026-01-02T03:04:05Z",
     "values": {"lastAcceptedTime": "2026-01-02T03:04:00Z", "inputPartitions": 3, ...},
     "partitions": [{"topic": "alerts", "partition": 0, "lag": 12, "replay": 7, "replayOffset": 1200}]}

A value the operator does not know is ignored by it; a new one needs a merge rule there
(``alertfilter_operator.runner_status.MERGE``) to reach the AlertFilter's status.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

#: The document's format; the operator refuses documents of another.
STATUS_FORMAT = 1


def rfc3339(seconds: float) -> str:
    """A Unix time (s) as RFC 3339 in UTC, second precision: ``2026-01-02T03:04:05Z``."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunnerStatus:
    """The runner's status document, written by the runner's parts and read by the HTTP server's
    thread (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._providers: dict[str, Callable[[], Any]] = {}
        self._partitions: dict[tuple[str, int], dict[str, Any]] = {}

    def set(self, name: str, value: Any) -> None:
        """Publish ``value`` (JSON) as ``name``; None removes it."""
        with self._lock:
            if value is None:
                self._values.pop(name, None)
            else:
                self._values[name] = value

    def provide(self, name: str, fn: Callable[[], Any]) -> None:
        """Publish ``name`` as what ``fn()`` returns when the document is built (None: left out)."""
        with self._lock:
            self._providers[name] = fn

    def get(self, name: str) -> Any:
        """The value published as ``name`` (computed for a provided one), or None."""
        with self._lock:
            fn = self._providers.get(name)
            value = self._values.get(name)
        return fn() if fn is not None else value

    def assign(self, topic: str, partition: int, **fields: Any) -> None:
        """List the partition (assigned to this runner), with ``fields``."""
        with self._lock:
            self._partitions[(topic, partition)] = {k: v for k, v in fields.items() if v is not None}

    def revoke(self, topic: str, partition: int) -> None:
        """Stop listing the partition (revoked or lost)."""
        with self._lock:
            self._partitions.pop((topic, partition), None)

    def update_partition(self, topic: str, partition: int, **fields: Any) -> None:
        """Set ``fields`` of an assigned partition (a partition not assigned is left alone; None removes a field)."""
        with self._lock:
            p = self._partitions.get((topic, partition))
            if p is None:
                return
            for k, v in fields.items():
                if v is None:
                    p.pop(k, None)
                else:
                    p[k] = v

    def partition(self, topic: str, partition: int) -> dict[str, Any] | None:
        """A copy of an assigned partition's fields, or None."""
        with self._lock:
            p = self._partitions.get((topic, partition))
            return dict(p) if p is not None else None

    def document(self, now: float) -> dict[str, Any]:
        """The document at Unix time ``now`` (s)."""
        with self._lock:
            values = dict(self._values)
            providers = dict(self._providers)
            parts = [{"topic": t, "partition": p, **f} for (t, p), f in sorted(self._partitions.items())]
        for name, fn in providers.items():
            v = fn()
            if v is not None:
                values[name] = v
        return {"format": STATUS_FORMAT, "time": rfc3339(now), "values": values, "partitions": parts}
