"""What the runners report: their status documents, read from each runner pod and merged.

Each runner serves one JSON document on its metrics port, ``GET /status``
(``alertfilter.runstatus``): named ``values`` and the fields of the input partitions it has
assigned. The operator reads it straight from the pod's IP (the runners' NetworkPolicy lets the
metrics port in), so it needs no Kafka credential and no ``pods/proxy`` right, and merges the
documents of a filter's pods into one :class:`RunnerReport`:

- partitions: each partition's fields from the newest document that lists it (during a
  rebalance two pods may list one partition);
- values: each named value merged across pods by its rule in :data:`MERGE` (a value without a
  rule is kept per pod only: :meth:`RunnerReport.per_pod`).

To report something new from the runner to the AlertFilter's status: publish it in the runner
(``RunnerStatus.set``/``provide``/``update_partition``), give it a merge rule here if it is a
value, and read it from the report where the status is written (``alertfilters.observe``).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("alertfilter_operator.runner_status")

#: The runner's status document: path and format (``alertfilter.runstatus``).
STATUS_PATH = "/status"
STATUS_FORMAT = 1
#: How long one pod may take to answer, s (an unanswered pod is left out of that round).
FETCH_TIMEOUT_S = 3.0
#: Largest document read, bytes (a pod answering more is ignored).
MAX_DOCUMENT_BYTES = 1 << 20


def _latest_time(values: list[Any]) -> Any:
    """The latest of RFC 3339 UTC times of one format (``...Z``): they sort as text."""
    times = [v for v in values if isinstance(v, str)]
    return max(times) if times else None


def _largest(values: list[Any]) -> Any:
    nums = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return max(nums) if nums else None


#: How each named value of the runners' documents is merged across a filter's pods.
MERGE: dict[str, Callable[[list[Any]], Any]] = {
    "lastAcceptedTime": _latest_time,
    "inputPartitions": _largest,
    "replayRequest": _largest,
}


@dataclass
class RunnerReport:
    """What a filter's runner pods reported in one round.

    Attributes:
        asked: pods asked; answered: pods that gave a document.
        partitions: ``{(topic, partition): fields}`` of every partition some pod has assigned.
        values: the named values merged by :data:`MERGE`.
        docs: the documents as read, oldest first.
    """

    asked: int = 0
    answered: int = 0
    partitions: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    docs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        """Messages behind the input's end, summed over the partitions that report a lag; None when none does."""
        lags = [p["lag"] for p in self.partitions.values() if isinstance(p.get("lag"), int)]
        return sum(lags) if lags else None

    def per_pod(self, name: str) -> list[Any]:
        """The value ``name`` of each document that has it (values without a merge rule)."""
        return [d["values"][name] for d in self.docs if name in d.get("values", {})]


def merge(docs: Iterable[dict[str, Any]], asked: int | None = None) -> RunnerReport:
    """One report from the documents of a filter's pods (malformed ones are left out)."""
    good = sorted((d for d in docs if valid(d)), key=lambda d: str(d.get("time", "")))
    report = RunnerReport(asked=len(good) if asked is None else asked, answered=len(good), docs=good)
    for d in good:
        for p in d.get("partitions") or []:
            if isinstance(p, dict) and isinstance(p.get("topic"), str) and isinstance(p.get("partition"), int):
                report.partitions[(p["topic"], p["partition"])] = {
                    k: v for k, v in p.items() if k not in ("topic", "partition")
                }
    for name, rule in MERGE.items():
        values = [d["values"][name] for d in good if name in d["values"]]
        merged = rule(values) if values else None
        if merged is not None:
            report.values[name] = merged
    return report


def valid(doc: Any) -> bool:
    """True for a runner status document of the format this operator reads."""
    return (
        isinstance(doc, dict)
        and doc.get("format") == STATUS_FORMAT
        and isinstance(doc.get("values"), dict)
        and isinstance(doc.get("partitions", []), list)
    )


def reachable(pods: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(name, IP)`` of the runner pods that can answer: running, not being deleted, with an IP."""
    out = []
    for p in pods:
        st = p.get("status") or {}
        if st.get("phase") == "Running" and st.get("podIP") and not p["metadata"].get("deletionTimestamp"):
            out.append((p["metadata"]["name"], st["podIP"]))
    return out


def fetch(ip: str, port: int, timeout: float = FETCH_TIMEOUT_S) -> dict[str, Any] | None:
    """The status document of the runner at ``ip``, or None (unreachable, not a document, too large)."""
    host = f"[{ip}]" if ":" in ip else ip
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{STATUS_PATH}", timeout=timeout) as resp:
            body = resp.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, ValueError) as exc:
        log.debug("no status from %s:%d: %s", ip, port, exc)
        return None
    if len(body) > MAX_DOCUMENT_BYTES:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if valid(doc) else None


def read_runners(pods: Iterable[dict[str, Any]], port: int, timeout: float = FETCH_TIMEOUT_S) -> RunnerReport:
    """Ask every reachable pod of ``pods`` for its document and merge what comes back."""
    targets = reachable(pods)
    docs = [d for d in (fetch(ip, port, timeout) for _, ip in targets) if d is not None]
    return merge(docs, asked=len(targets))
