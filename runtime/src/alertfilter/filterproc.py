"""The filter process: the filter author's code, and the decoding it needs, away from the runner.

Started by :class:`alertfilter.supervisor.FilterProcess` as ``python -m alertfilter.filterproc
REQUEST_FD REPLY_FD`` with an environment that holds no Kafka setting or credential, in a session
of its own. It reads its settings (a ``C`` frame, see :mod:`alertfilter.protocol`), loads the
filter, then answers each batch of message values with one verdict per value, in order. It has no
Kafka client and no handle on the runner: the runner applies the per-visit cap, produces,
commits, and ends this process when a call outlives the hard limit.

Before any of the author's code runs, the process gives up what it does not need: it dies with its
parent (``PR_SET_PDEATHSIG``), drops every Linux capability (so that, as root, it cannot read the
runner's memory or environment through ``/proc``), may never gain privileges again, and, when a
memory limit is set, cannot map more than that (``RLIMIT_AS``).
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
from typing import Any

from . import protocol as p
from .api import FilterSourceError, load_filter
from .cap import VisitCap
from .decoding import DecodingSpec, decode_fields
from .logs import setup_logging
from .processor import AlertProcessor
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
    """Die with ``parent``, drop every capability, forbid new privileges, limit memory (best effort
    where the kernel refuses; Linux only)."""
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


class Replies:
    """Frames to the runner, buffered: sent together just before each filter call and at the end of
    a batch (one write per alert)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf: list[bytes] = []

    def add(self, data: bytes) -> None:
        self._buf.append(data)

    def flush(self) -> None:
        data = b"".join(self._buf)
        self._buf.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def started(self, alert_id: Any) -> None:
        """The filter is about to be called on the alert ``alert_id``: tell the runner now."""
        self.add(p.json_frame(p.START, alert_id))
        self.flush()


def read_exact(fd: int, n: int) -> memoryview | None:
    """``n`` bytes from ``fd``; None at the end of the input (the runner closed the pipe)."""
    buf = bytearray(n)
    view = memoryview(buf)
    pos = 0
    while pos < n:
        got = os.readv(fd, [view[pos:]])
        if got == 0:
            return None
        pos += got
    return view


def read_frame(fd: int) -> tuple[bytes, memoryview] | None:
    """The next frame from the runner; None when it closed the pipe."""
    head = read_exact(fd, p.HEADER.size)
    if head is None:
        return None
    kind, size = p.HEADER.unpack(head)
    payload = read_exact(fd, size)
    return None if payload is None else (kind, payload)


def serve(request_fd: int, reply_fd: int) -> int:
    """Load the filter the ``C`` frame describes, then answer batches until the runner closes the pipe.

    Returns:
        0 (also when the filter cannot be loaded: an ``E`` frame says why).
    """
    first = read_frame(request_fd)
    if first is None or first[0] != p.CONFIG:
        return 1
    cfg = json.loads(bytes(first[1]))
    setup_logging(cfg.get("log_format", "text"), cfg.get("log_level", "info"))
    replies = Replies(reply_fd)
    source = cfg["source"]
    try:
        flt = load_filter(source, cfg.get("entrypoint"))
        fields = decode_fields(cfg.get("fields", "auto"), flt, source, cfg["visit_field"], cfg["id_field"])
        decoder = DecodingSpec(**cfg["decoding"]).build(fields)
    except FilterSourceError as exc:
        replies.add(p.json_frame(p.LOAD_ERROR, exc.as_dict()))
        replies.flush()
        return 0
    except (ValueError, OSError, ImportError) as exc:
        replies.add(p.json_frame(p.LOAD_ERROR, {"line": 0, "column": 0, "message": str(exc)}))
        replies.flush()
        return 0
    processor = AlertProcessor(
        flt, decoder, VisitCap(None), cfg["visit_field"], cfg["id_field"], cfg["filter_timeout_s"]
    )
    processor.on_filter_start = replies.started
    replies.add(
        p.json_frame(
            p.HELLO,
            {
                "name": flt.name,
                "fields": sorted(fields) if fields is not None else None,
                "projected": fields is not None
                and decoder.fields is not None
                and decoder._make == decoder._make_projected,
            },
        )
    )
    replies.flush()
    while True:
        got = read_frame(request_fd)
        if got is None:
            return 0
        kind, payload = got
        if kind != p.BATCH:
            return 1
        for value in p.split_batch(payload):
            try:
                oc = processor.process(value)
            except SchemaSourceError as exc:
                replies.add(p.frame(p.SCHEMA_ERROR, str(exc).encode("utf-8", "replace")))
                break  # the runner retries from this value later
            replies.add(p.json_frame(p.VERDICT, p.verdict_payload(oc)))
        replies.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m alertfilter.filterproc REQUEST_FD REPLY_FD PARENT_PID [MEMORY_LIMIT]``."""
    args = sys.argv[1:] if argv is None else argv
    request_fd, reply_fd, parent = int(args[0]), int(args[1]), int(args[2])
    memory = int(args[3]) if len(args) > 3 else 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when this process ends
    give_up_privileges(parent, memory)
    faulthandler.enable()  # a crash of the author's code shows its traceback in the runner's log
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the runner asks where a call is stuck
    os.dup2(2, 1)  # the author's print() goes to the log, never into the reply pipe
    return serve(request_fd, reply_fd)


if __name__ == "__main__":
    sys.exit(main())
