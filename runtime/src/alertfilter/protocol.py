"""The protocol between the runner and its filter process: length-prefixed frames on two pipes,
and one page of shared memory.

A frame is one type byte, a 4-byte big-endian payload length, then the payload. The runner sends:

- ``C`` once, the filter process's settings (JSON, see :class:`alertfilter.supervisor.FilterSpec`);
- ``B`` a batch of message values: a 4-byte count, a table of where each value is (:data:`PLACE`:
  its length, -1 for null, and its offset in the shared :class:`DataRegion`, -1 when it follows in
  the frame), then the values not in the region. The filter process filters them one by one.

The filter process answers ``H`` (ready: JSON ``{"name", "fields", "projected"}``) or ``E`` (the
filter cannot be loaded: JSON ``{"line", "column", "message"}``) to ``C``; to a batch, ``V``
frames holding the verdicts of the next values in order (JSON ``[[kind, reason, message,
alert_id, visit, filter_seconds], ...]``), sent every :data:`FLUSH_VERDICTS` verdicts, every
:data:`FLUSH_AFTER_S` and at the batch's end; ``Q`` (a text) when the schema source is unusable
for the next value (the rest of the batch is then read and dropped).

The :class:`ProgressPage` says which value of which batch the filter process is on, and the alert's
id: the runner reads it to enforce the hard limit and to name the alert a dying process was on,
without a write per alert. Everything the filter process sends or writes is untrusted:
:func:`parse_verdict` checks it, and a reply larger than :data:`MAX_REPLY_BYTES` is refused.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from .outcome import Kind, Outcome, Reason

HEADER = struct.Struct(">cI")
COUNT = struct.Struct(">I")
LENGTH = struct.Struct(">i")
#: Where a batch value is: its length (-1: null) and its offset in the shared region (-1: in the frame).
PLACE = struct.Struct(">iq")
#: Largest frame the runner accepts from the filter process, bytes: a verdict is a few hundred.
MAX_REPLY_BYTES = 1 << 20
#: Longest error message kept in a verdict, characters (the dead-letter header keeps 2,000 bytes).
MAX_MESSAGE_CHARS = 2000
#: Verdicts the filter process gathers before it sends them (one write, one wake-up of the runner).
FLUSH_VERDICTS = 64
#: The longest a verdict waits in the filter process before it is sent, s.
FLUSH_AFTER_S = 0.02

CONFIG, BATCH = b"C", b"B"
HELLO, LOAD_ERROR, VERDICT, SCHEMA_ERROR = b"H", b"E", b"V", b"Q"


class ProtocolError(ValueError):
    """The filter process sent something that is not a frame of this protocol."""


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame: ``kind`` (one byte) and ``payload``."""
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: bytes, obj: Any) -> bytes:
    """A frame holding ``obj`` as compact JSON (values JSON cannot hold are sent as their ``str()``)."""
    return frame(kind, json.dumps(obj, separators=(",", ":"), default=str).encode())


def batch_buffers(values: Sequence[bytes | None], region: DataRegion | None = None) -> list[bytes]:
    """The ``B`` frame of ``values`` as a list of buffers (for ``os.writev``: no joined copy). The
    values are copied into ``region`` as long as it has room; the others travel in the frame."""
    table = bytearray(COUNT.pack(len(values)))
    inline: list[bytes] = []
    free = 0
    for v in values:
        if v is None:
            table += PLACE.pack(-1, -1)
        elif region is not None and free + len(v) <= region.size:
            region.put(free, v)
            table += PLACE.pack(len(v), free)
            free += len(v)
        else:
            table += PLACE.pack(len(v), -1)
            inline.append(v)
    size = len(table) + sum(map(len, inline))
    return [HEADER.pack(BATCH, size), bytes(table), *inline]


def verdict_payload(oc: Outcome) -> list[Any]:
    """What a ``V`` frame holds for ``oc``."""
    return [
        str(oc.kind),
        str(oc.reason),
        oc.message[:MAX_MESSAGE_CHARS],
        oc.alert_id,
        oc.visit,
        round(oc.filter_seconds, 6),
    ]


_KINDS = {k.value: k for k in Kind if k is not Kind.CAPPED}  # only the runner caps
_RUNNERS = (Reason.CRASHED, Reason.TOO_LARGE, Reason.ORIGINAL_MISSING)  # only the runner says these
_REASONS = {r.value: r for r in Reason if r not in _RUNNERS}


def parse_verdicts(payload: bytes) -> list[Outcome]:
    """The outcomes a ``V`` frame's payload lists.

    Raises:
        ProtocolError: see :func:`parse_verdict`.
    """
    try:
        items = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the stack
        raise ProtocolError(f"unreadable verdicts: {type(exc).__name__}") from None
    if not isinstance(items, list):
        raise ProtocolError("verdicts that are not a list")
    if not items:
        raise ProtocolError("an empty verdict frame")  # would only serve to look alive
    return [parse_verdict(item) for item in items]


def parse_verdict(item: Any) -> Outcome:
    """The :class:`Outcome` one verdict (``[kind, reason, message, alert_id, visit, filter_seconds]``) describes.

    Raises:
        ProtocolError: not JSON, a kind or reason the filter process may not give, an accepted
            alert without an integer or string visit, a time that is not a finite number >= 0.
    """
    try:
        kind, reason, message, alert_id, visit, seconds = item
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"unreadable verdict: {exc}") from None
    k = _KINDS.get(kind) if isinstance(kind, str) else None
    if k is None:
        raise ProtocolError(f"unknown verdict kind {str(kind)[:40]!r}")
    r: Reason | str = ""
    if k is Kind.ERROR:
        r = _REASONS.get(reason) if isinstance(reason, str) else None  # type: ignore[assignment]
        if r is None:
            raise ProtocolError(f"unknown error reason {str(reason)[:40]!r}")
    if k is Kind.ACCEPTED and (isinstance(visit, bool) or not isinstance(visit, (int, str))):
        raise ProtocolError("an accepted verdict without an integer or string visit")
    if isinstance(seconds, int) and not isinstance(seconds, bool) and abs(seconds) <= 2**53:
        seconds = float(seconds)  # an int past float's range would raise OverflowError in isfinite
    if not isinstance(seconds, float) or not math.isfinite(seconds) or seconds < 0:
        raise ProtocolError("a verdict with an invalid filter time")
    return Outcome(k, r, str(message)[:MAX_MESSAGE_CHARS], alert_id, visit, float(seconds))


class FrameReader:
    """Splits bytes read from a pipe into frames; :meth:`feed` then iterate :meth:`frames`.

    Args:
        limit: the largest payload accepted, bytes.
    """

    def __init__(self, limit: int = MAX_REPLY_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> None:
        """Add bytes read from the pipe."""
        self._buf += data

    def frames(self) -> Iterator[tuple[bytes, bytes]]:
        """The complete frames received so far, as ``(kind, payload)``.

        Raises:
            ProtocolError: a frame larger than the limit.
        """
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= HEADER.size:
                kind, size = HEADER.unpack_from(buf, pos)
                if size > self._limit:
                    raise ProtocolError(f"a reply of {size} bytes (the limit is {self._limit})")
                end = pos + HEADER.size + size
                if end > len(buf):
                    break
                payload = bytes(buf[pos + HEADER.size : end])
                pos = end  # before the yield: a consumer that stops here has this frame
                yield kind, payload
        finally:
            del buf[:pos]


class DataRegion:
    """Shared memory the runner copies a batch's values into, so that they cross to the filter
    process with one copy (a pipe takes two, and pages of its own); values that do not fit travel
    in the frame. The filter process decodes from views of it.

    Args:
        size: bytes (the memory is taken only as it is written).
        fd: the region's file descriptor (the filter process); None to create one (the runner).
    """

    def __init__(self, size: int, fd: int | None = None) -> None:
        self._own = fd is None
        if fd is None:
            fd = _shared_fd("alertfilter-values", size)
        self.fd, self.size = fd, size
        self._mm = mmap.mmap(fd, size)
        self.view = memoryview(self._mm)

    def put(self, offset: int, value: bytes) -> None:
        """Copy ``value`` to ``offset``."""
        self._mm[offset : offset + len(value)] = value

    def get(self, offset: int, length: int) -> memoryview:
        """A view of ``length`` bytes at ``offset``.

        Raises:
            ProtocolError: outside the region.
        """
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ProtocolError("a value outside the shared region")
        return self.view[offset : offset + length]

    def close(self) -> None:
        """Unmap the region (and close it, in the runner)."""
        self.view.release()
        self._mm.close()
        if self._own:
            os.close(self.fd)


def _shared_fd(name: str, size: int) -> int:
    """A file descriptor of ``size`` bytes of shared memory (memfd: no file system needed)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, 0)
    else:
        fd, path = tempfile.mkstemp(prefix=name + "-")
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


class ProgressPage:
    """A page of memory shared by the runner and its filter process: which value of which batch the
    filter process is on (or that it is between values), and that alert's id.

    Args:
        fd: the page's file descriptor (the filter process); None to create one (the runner).
    """

    IDLE = 0xFFFFFFFF  #: ``pos`` while the filter process is between values
    _HEAD = struct.Struct("<QIH")  # batch number, position in it, length of the alert id
    _ID_MAX = 240
    SIZE = 4096

    def __init__(self, fd: int | None = None) -> None:
        self._own = fd is None
        if fd is None:
            fd = _shared_fd("alertfilter-progress", self.SIZE)
        self.fd = fd
        self._mm = mmap.mmap(fd, self.SIZE)
        self._seq = 0

    def mark(self, seq: int, pos: int) -> None:
        """The filter process starts on value ``pos`` of batch ``seq`` (``IDLE``: between values)."""
        self._seq = seq
        self._HEAD.pack_into(self._mm, 0, seq, pos, 0)

    def set_alert_id(self, alert_id: Any) -> None:
        """The id of the alert of the current value (before its filter call)."""
        data = str(alert_id).encode("utf-8", "replace")[: self._ID_MAX]
        end = self._HEAD.size + len(data)
        self._mm[self._HEAD.size : end] = data
        struct.pack_into("<H", self._mm, 12, len(data))

    def read(self) -> tuple[int, int, str | None]:
        """``(batch number, position, alert id or None)``."""
        seq, pos, n = self._HEAD.unpack_from(self._mm, 0)
        n = min(n, self._ID_MAX)
        text = bytes(self._mm[self._HEAD.size : self._HEAD.size + n]).decode("utf-8", "replace") if n else None
        return seq, pos, text

    def close(self) -> None:
        """Unmap the page (and close it, in the runner)."""
        self._mm.close()
        if self._own:
            os.close(self.fd)
