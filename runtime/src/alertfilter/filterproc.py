"""The filter process: the filter author's code, and the decoding it needs, away from the runner.

Started by :class:`alertfilter.supervisor.FilterProcess` as ``python -m alertfilter.filterproc
REQUEST_FD REPLY_FD PAGE_FD REGION_FD REGION_BYTES PARENT_PID MEMORY_LIMIT`` with an environment that holds no Kafka setting or credential, in a session
of its own. It reads its settings (a ``C`` frame, see :mod:`alertfilter.protocol`), loads the
filter, then answers each batch of message values with one verdict per value, in order, marking
on the shared progress page which value it is on. It has no
Kafka client and no handle on the runner: the runner applies the per-visit cap, produces,
commits, and ends this process when a call outlives the hard limit.

Before any of the author's code runs, the process gives up what it does not need: it dies with its
parent (``PR_SET_PDEATHSIG``), drops every Linux capability (so that, as root, it cannot read the
runner's memory or environment through ``/proc``), may never gain privileges again, may signal,
trace or reconfigure no process but itself (a seccomp filter, :mod:`alertfilter.sandbox`: the
runner has the same uid), and, when a memory limit is set, cannot map more than that (``RLIMIT_AS``).
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import logging
import os
import resource
import signal
import sys
import time
from typing import Any

from . import protocol as p
from .api import FilterSourceError, load_filter
from .cap import VisitCap
from .decoding import DecodingSpec, decode_fields
from .logs import setup_logging
from .outcome import Outcome
from .processor import AlertProcessor
from .sandbox import confine
from .schemas import SchemaSourceError

log = logging.getLogger("alertfilter.filterproc")

# prctl(2) options and capability constants (linux/prctl.h, linux/capability.h).
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_LAST = 63
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def give_up_privileges(parent: int, memory_limit_bytes: int = 0) -> None:
    """Die with ``parent``, drop every capability, forbid new privileges, install the seccomp filter,
    limit memory (best effort where the kernel refuses, but for the seccomp filter; Linux only).

    Raises:
        ConfineError: the kernel refused the seccomp filter (the process then ends before it is ready).
    """
    if memory_limit_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the runner died before the line above
        os._exit(1)
    for cap in range(_CAP_LAST + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly without CAP_SETPCAP or past the last
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        log.debug("capset failed: errno %d", ctypes.get_errno())
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if not confine():  # signals, tracing, limits: only on itself (raises when the kernel refuses)
        log.warning("no seccomp filter for %s: the filter can signal the runner", os.uname().machine)


class Replies:
    """Verdicts to the runner, gathered: sent every :data:`~alertfilter.protocol.FLUSH_VERDICTS`
    verdicts, when the oldest waited :data:`~alertfilter.protocol.FLUSH_AFTER_S`, and at a batch's end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._verdicts: list[list[Any]] = []
        self._since = 0.0

    def write(self, data: bytes) -> None:
        """Send ``data`` now (blocking)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def add(self, oc: Outcome) -> None:
        """One more verdict, in order."""
        if not self._verdicts:
            self._since = time.monotonic()
        self._verdicts.append(p.verdict_payload(oc))
        if len(self._verdicts) >= p.FLUSH_VERDICTS:
            self.flush()

    def due(self) -> bool:
        """True when verdicts have waited long enough."""
        return bool(self._verdicts) and time.monotonic() - self._since >= p.FLUSH_AFTER_S

    def flush(self) -> None:
        """Send the gathered verdicts."""
        if self._verdicts:
            data = p.json_frame(p.VERDICT, self._verdicts)
            self._verdicts = []
            self.write(data)


def read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``, read straight into one ``bytes`` object when the pipe holds them (no
    copy but the kernel's); None at the end of the input (the runner closed the pipe)."""
    if n == 0:
        return b""
    data = os.read(fd, n)
    if len(data) == n:
        return data
    if not data:
        return None
    parts, got = [data], len(data)
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> tuple[bytes, bytes] | None:
    """The next whole frame from the runner; None when it closed the pipe."""
    head = read_exact(fd, p.HEADER.size)
    if head is None:
        return None
    kind, size = p.HEADER.unpack(head)
    payload = read_exact(fd, size)
    return None if payload is None else (kind, payload)


def _load(cfg: dict[str, Any], replies: Replies) -> AlertProcessor | None:
    """The processor the settings describe; None (after an ``E`` frame saying why) when the filter
    or its decoding cannot be loaded."""
    source = cfg["source"]
    try:
        flt = load_filter(source, cfg.get("entrypoint"))
        fields = decode_fields(cfg.get("fields", "auto"), flt, source, cfg["visit_field"], cfg["id_field"])
        decoder = DecodingSpec(**cfg["decoding"]).build(fields)
    except FilterSourceError as exc:
        replies.write(p.json_frame(p.LOAD_ERROR, exc.as_dict()))
        return None
    except (ValueError, OSError, ImportError) as exc:
        replies.write(p.json_frame(p.LOAD_ERROR, {"line": 0, "column": 0, "message": str(exc)}))
        return None
    processor = AlertProcessor(
        flt, decoder, VisitCap(None), cfg["visit_field"], cfg["id_field"], cfg["filter_timeout_s"]
    )
    hello = {
        "name": flt.name,
        "fields": sorted(fields) if fields is not None else None,
        "projected": decoder.projects(),
    }
    replies.write(p.json_frame(p.HELLO, hello))
    return processor


def serve(request_fd: int, reply_fd: int, page: p.ProgressPage, region: p.DataRegion) -> int:
    """Load the filter the ``C`` frame describes, then answer batches until the runner closes the pipe.

    Returns:
        0 (also when the filter cannot be loaded: an ``E`` frame says why); 1 for a frame out of place.
    """
    first = read_frame(request_fd)
    if first is None or first[0] != p.CONFIG:
        return 1
    cfg = json.loads(first[1])
    setup_logging(cfg.get("log_format", "text"), cfg.get("log_level", "info"))
    replies = Replies(reply_fd)
    processor = _load(cfg, replies)
    if processor is None:
        return 0
    processor.on_filter_start = page.set_alert_id
    seq = 0
    while True:
        head = read_exact(request_fd, p.HEADER.size + p.COUNT.size)
        if head is None:
            return 0
        kind, _ = p.HEADER.unpack_from(head)
        if kind != p.BATCH:
            return 1
        (count,) = p.COUNT.unpack_from(head, p.HEADER.size)
        table = read_exact(request_fd, p.PLACE.size * count)
        if table is None:
            return 0
        seq += 1
        failed = False
        for pos, (size, offset) in enumerate(p.PLACE.iter_unpack(table)):
            value: bytes | memoryview | None = None
            if size >= 0 and offset >= 0:
                value = region.get(offset, size)
            elif size >= 0:
                value = read_exact(request_fd, size)
                if value is None:
                    return 0
            if failed:
                continue  # the rest of a batch whose schema source failed: read, dropped
            if replies.due():
                replies.flush()
            page.mark(seq, pos)
            try:
                oc = processor.process(value)
            except SchemaSourceError as exc:
                page.mark(seq, page.IDLE)
                replies.flush()
                replies.write(p.frame(p.SCHEMA_ERROR, str(exc).encode("utf-8", "replace")))
                failed = True
                continue
            page.mark(seq, page.IDLE)
            replies.add(oc)
        replies.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m alertfilter.filterproc REQUEST_FD REPLY_FD PAGE_FD REGION_FD REGION_BYTES
    PARENT_PID MEMORY_LIMIT``."""
    args = sys.argv[1:] if argv is None else argv
    request_fd, reply_fd, page_fd, region_fd, region_bytes, parent, memory = (int(a) for a in args[:7])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when this process ends
    give_up_privileges(parent, memory)
    faulthandler.enable()  # a crash of the author's code shows its traceback in the runner's log
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the runner asks where a call is stuck
    os.dup2(2, 1)  # the author's print() goes to the log, never into the reply pipe
    return serve(request_fd, reply_fd, p.ProgressPage(page_fd), p.DataRegion(region_bytes, region_fd))


if __name__ == "__main__":
    sys.exit(main())
