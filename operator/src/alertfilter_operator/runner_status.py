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
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("alertfilter_operator.runner_status")

#: The runner's status document: path and format (``alertfilter.runstatus``).
STATUS_PATH = "/status"
STATUS_FORMAT = 1
#: How long one pod may take to answer, s, all of it (connect, headers, body): a pod that trickles
#: its answer is cut off there and left out of that round.
FETCH_TIMEOUT_S = 3.0
#: Largest document read, bytes (a pod answering more is ignored).
MAX_DOCUMENT_BYTES = 1 << 20
#: Largest response head (status line and headers), bytes.
MAX_HEAD_BYTES = 16 * 1024
#: Pods of one filter asked at once: a filter's pods cost one timeout per round, not one each.
PARALLEL_FETCHES = 8


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


def _owned_by(pod: dict[str, Any], deployment: str) -> bool:
    """True when ``pod`` is controlled by the ReplicaSet ``<deployment>-<pod-template-hash>``, as the
    pods of the Deployment ``deployment`` are: a bare pod that only carries the filter's label is
    not asked. (Defence in depth: what bounds a pod that answers slowly is :func:`fetch`'s deadline.)"""
    template = (pod["metadata"].get("labels") or {}).get("pod-template-hash")
    if not template:
        return False
    return any(
        ref.get("controller") and ref.get("kind") == "ReplicaSet" and ref.get("name") == f"{deployment}-{template}"
        for ref in pod["metadata"].get("ownerReferences") or []
    )


def reachable(pods: Iterable[dict[str, Any]], deployment: str | None = None) -> list[tuple[str, str]]:
    """``(name, IP)`` of the runner pods that can answer: running, not being deleted, with an IP,
    and (with ``deployment``) controlled by that Deployment's ReplicaSets."""
    out = []
    for p in pods:
        st = p.get("status") or {}
        if deployment is not None and not _owned_by(p, deployment):
            continue
        if st.get("phase") == "Running" and st.get("podIP") and not p["metadata"].get("deletionTimestamp"):
            out.append((p["metadata"]["name"], st["podIP"]))
    return out


def _get(ip: str, port: int, timeout: float) -> bytes | None:
    """The body of ``GET /status`` (HTTP/1.0: the server closes the connection after it) from
    ``ip:port`` within ``timeout`` s in all, or None (an error, not 200, too large, too slow).
    A socket of its own rather than urllib, whose timeout is per read: a pod sending a byte a
    second would hold an operator thread for as long as it likes."""
    deadline = time.monotonic() + timeout
    host = f"[{ip}]" if ":" in ip else ip
    chunks: list[bytes] = []
    size = 0
    with socket.create_connection((ip, port), timeout=timeout) as sock:
        sock.sendall(f"GET {STATUS_PATH} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole answer within {timeout:g} s")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES + MAX_HEAD_BYTES:
                return None
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(head) > MAX_HEAD_BYTES or len(status) < 2 or status[1] != b"200":
        return None
    return body


def fetch(ip: str, port: int, timeout: float = FETCH_TIMEOUT_S) -> dict[str, Any] | None:
    """The status document of the runner at ``ip``, or None (unreachable, slower than ``timeout``
    s in all, not a document, too large)."""
    try:
        body = _get(ip, port, timeout)
    except (OSError, ValueError) as exc:
        log.debug("no status from %s:%d: %s", ip, port, exc)
        return None
    if body is None or len(body) > MAX_DOCUMENT_BYTES:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if valid(doc) else None


def read_runners(
    pods: Iterable[dict[str, Any]], port: int, timeout: float = FETCH_TIMEOUT_S, deployment: str | None = None
) -> RunnerReport:
    """Ask every reachable pod of ``pods`` (of ``deployment``, when given) for its document, up to
    :data:`PARALLEL_FETCHES` at once, and merge what comes back."""
    targets = reachable(pods, deployment)
    if not targets:
        return merge([], asked=0)
    with ThreadPoolExecutor(max_workers=min(PARALLEL_FETCHES, len(targets))) as pool:
        answers = list(pool.map(lambda t: fetch(t[1], port, timeout), targets))
    return merge([d for d in answers if d is not None], asked=len(targets))
