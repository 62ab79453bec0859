"""Prometheus metrics and the health endpoints of the filter-runner.

Endpoints (one HTTP port, ``--metrics-port``):

- ``/metrics``: Prometheus text format.
- ``/healthz``: 200 while the runner has processed a message or turned its poll loop within the
  liveness window (it beats once per message, so a slow but progressing batch stays healthy), else 503.
- ``/readyz``: 200 once the consumer has joined its group (partitions assigned, or none for a
  standby replica), else 503.
- ``/status``: the runner's status document for the operator, JSON (:mod:`alertfilter.runstatus`).
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .limits import LIMIT_NAMES, LimitGuard
from .outcome import Reason
from .runstatus import RunnerStatus


class RunnerMetrics:
    """The runner's metrics, in their own registry.

    Metrics: ``alertfilter_alerts_consumed_total``, ``alertfilter_alerts_accepted_total``,
    ``alertfilter_alerts_rejected_total``, ``alertfilter_alerts_capped_total``,
    ``alertfilter_errors_total{reason}``, ``alertfilter_filter_seconds`` (histogram of one filter
    call, s), ``alertfilter_consumer_lag{topic,partition}`` (messages), ``alertfilter_dead_letters_total``,
    ``alertfilter_last_accepted_timestamp_seconds`` (when an accepted alert was last acknowledged,
    Unix time; 0 before the first);
    the limits (``spec.limits``, :mod:`alertfilter.limits`): ``alertfilter_alerts_limited_total``,
    ``alertfilter_limit_trips_total{limit}``, ``alertfilter_limited{limit}`` (1 while the limit stops
    forwarding, else 0) and ``alertfilter_limit_tripped_timestamp_seconds{limit}`` (when it tripped,
    Unix time; 0 while it does not stop forwarding), ``limit`` being maxAcceptedPerDay,
    maxBytesPerDay or maxMatchRate.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "alertfilter_alerts_consumed", "Alerts (messages) consumed from the input topic.", registry=r
        )
        self.accepted = Counter(
            "alertfilter_alerts_accepted", "Alerts the filter accepted and the runner forwarded.", registry=r
        )
        self.rejected = Counter("alertfilter_alerts_rejected", "Alerts the filter did not accept.", registry=r)
        self.capped = Counter(
            "alertfilter_alerts_capped", "Alerts the filter accepted beyond the per-visit cap.", registry=r
        )
        self.errors = Counter(
            "alertfilter_errors", "Alerts that could not be filtered, by reason.", ["reason"], registry=r
        )
        for reason in Reason:
            self.errors.labels(reason.value)
        self.dead_letters = Counter("alertfilter_dead_letters", "Records written to the dead-letter topic.", registry=r)
        self.filter_seconds = Histogram(
            "alertfilter_filter_seconds",
            "Wall time of one filter call, s.",
            registry=r,
            buckets=(1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0),
        )
        self.lag = Gauge(
            "alertfilter_consumer_lag",
            "Messages behind the end of each input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.last_accepted = Gauge(
            "alertfilter_last_accepted_timestamp_seconds",
            "When the output topic last acknowledged an accepted alert, Unix time (0: none yet).",
            registry=r,
        )
        #: The same time as ``last_accepted``, Unix s (0.0: none yet), for the status document.
        self.last_accepted_at = 0.0
        self.limited = Counter(
            "alertfilter_alerts_limited",
            "Alerts the filter accepted that were not forwarded because a limit (spec.limits) was passed.",
            registry=r,
        )
        self.limit_trips = Counter(
            "alertfilter_limit_trips", "Times a limit (spec.limits) tripped, by limit.", ["limit"], registry=r
        )
        self.limited_now = Gauge(
            "alertfilter_limited",
            "1 while a limit (spec.limits) stops forwarding, by limit; else 0.",
            ["limit"],
            registry=r,
        )
        self.limit_tripped_at = Gauge(
            "alertfilter_limit_tripped_timestamp_seconds",
            "When a limit that stops forwarding now tripped (Unix time); 0 while it does not.",
            ["limit"],
            registry=r,
        )
        for name in LIMIT_NAMES:
            self.limit_trips.labels(name)
            self.limited_now.labels(name)
            self.limit_tripped_at.labels(name)

    def accepted_now(self) -> None:
        """An accepted alert was acknowledged just now: count it and note the time."""
        self.accepted.inc()
        self.last_accepted_at = time.time()
        self.last_accepted.set(self.last_accepted_at)

    def watch_limits(self, guard: LimitGuard) -> None:
        """Count ``guard``'s trips and limited alerts, and read its state at each scrape."""
        for name in LIMIT_NAMES:
            self.limited_now.labels(name).set_function(functools.partial(_flag, guard.limited_now, name))
            self.limit_tripped_at.labels(name).set_function(functools.partial(_seconds, guard.tripped_at, name))
        guard.on_trip = lambda name, _message: self.limit_trips.labels(name).inc()
        guard.on_limited = lambda _name: self.limited.inc()


def _flag(read: Callable[[str], bool], name: str) -> float:
    return 1.0 if read(name) else 0.0


def _seconds(read: Callable[[str], int | None], name: str) -> float:
    return float(read(name) or 0)


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    Args:
        port: TCP port (0 picks a free one; see :attr:`port`).
        metrics: the registry to expose.
        alive: returns True while the poll loop makes progress.
        ready: returns True once the consumer has joined its group.
        host: the address to bind; empty (the default): every address of both families.
        status: the runner's status document, served on ``/status`` (None: 404 there).
    """

    def __init__(
        self,
        port: int,
        metrics: RunnerMetrics,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "",
        status: RunnerStatus | None = None,
    ) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    ok = alive()
                    body, ctype, code = (b"ok\n" if ok else b"poll loop stalled\n"), "text/plain", 200 if ok else 503
                elif path == "/readyz":
                    ok = ready()
                    body, ctype, code = (
                        (b"ok\n" if ok else b"not in the consumer group yet\n"),
                        "text/plain",
                        200 if ok else 503,
                    )
                elif path == "/status" and status is not None:
                    doc = status.document(time.time())
                    body, ctype, code = json.dumps(doc, separators=(",", ":")).encode(), "application/json", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet access log
                return

        self._server = _bind(host, port, Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _DualStackServer(ThreadingHTTPServer):
    """IPv6 and IPv4 on one socket (``::`` with IPV6_V6ONLY off): no other process of the pod (the
    filter process) can bind the port for the other family and answer in the runner's name."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """The server on ``host`` (empty: every address, both families where the pod has IPv6)."""
    if host:
        return ThreadingHTTPServer((host, port), handler)
    try:
        return _DualStackServer(("::", port), handler)
    except OSError:  # no IPv6 in this network namespace: IPv4 alone
        return ThreadingHTTPServer(("0.0.0.0", port), handler)


class Heartbeat:
    """Records when the runner last made progress; ``alive()`` is False after ``window_s`` (s) without a beat.

    :meth:`beat` is called by the poll loop; the runner also sets :attr:`last` (``time.monotonic()``)
    directly for every message, which is cheaper than a method call.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last < self.window_s
