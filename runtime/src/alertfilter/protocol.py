"""The pipe protocol between the runner and its filter process: length-prefixed frames.

A frame is one type byte, a 4-byte big-endian payload length, then the payload. The runner sends:

- ``C`` once, the filter process's settings (JSON, see :class:`alertfilter.supervisor.FilterSpec`);
- ``B`` a batch of message values: a 4-byte count, then per value a 4-byte signed length (-1 for
  a null value) and its bytes.

The filter process answers ``H`` (ready: JSON ``{"name", "fields", "projected"}``) or ``E`` (the
filter cannot be loaded: JSON ``{"line", "column", "message"}``) to ``C``, and per value of a
batch, in order, one verdict ``V`` (JSON ``[kind, reason, message, alert_id, visit,
filter_seconds]``), preceded by ``S`` (JSON alert id) just before the filter call, so that the
runner can name the alert when the call never returns. ``Q`` (a text) means the schema source is
unusable for the next value: the filter process drops the rest of the batch.

Everything the filter process sends is untrusted: :func:`parse_verdict` checks it, and a reply
larger than :data:`MAX_REPLY_BYTES` is refused.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

from .outcome import Kind, Outcome, Reason

HEADER = struct.Struct(">cI")
COUNT = struct.Struct(">I")
LENGTH = struct.Struct(">i")
#: Largest frame the runner accepts from the filter process, bytes: a verdict is a few hundred.
MAX_REPLY_BYTES = 1 << 20
#: Longest error message kept in a verdict, characters (the dead-letter header keeps 2,000 bytes).
MAX_MESSAGE_CHARS = 2000

CONFIG, BATCH = b"C", b"B"
HELLO, LOAD_ERROR, START, VERDICT, SCHEMA_ERROR = b"H", b"E", b"S", b"V", b"Q"


class ProtocolError(ValueError):
    """The filter process sent something that is not a frame of this protocol."""


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame: ``kind`` (one byte) and ``payload``."""
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: bytes, obj: Any) -> bytes:
    """A frame holding ``obj`` as compact JSON (values JSON cannot hold are sent as their ``str()``)."""
    return frame(kind, json.dumps(obj, separators=(",", ":"), default=str).encode())


def batch_buffers(values: list[bytes | None]) -> list[bytes]:
    """The ``B`` frame of ``values`` as a list of buffers (for ``os.writev``: no joined copy)."""
    out: list[bytes] = [b"", COUNT.pack(len(values))]
    size = COUNT.size
    for v in values:
        if v is None:
            out.append(LENGTH.pack(-1))
            size += LENGTH.size
        else:
            out.append(LENGTH.pack(len(v)))
            out.append(v)
            size += LENGTH.size + len(v)
    out[0] = HEADER.pack(BATCH, size)
    return out


def split_batch(payload: memoryview) -> list[bytes | None]:
    """The values of a ``B`` frame's payload.

    Raises:
        ProtocolError: a payload that does not hold what its counts say.
    """
    try:
        (n,) = COUNT.unpack_from(payload, 0)
        pos = COUNT.size
        out: list[bytes | None] = []
        for _ in range(n):
            (size,) = LENGTH.unpack_from(payload, pos)
            pos += LENGTH.size
            if size < 0:
                out.append(None)
                continue
            if pos + size > len(payload):
                raise ProtocolError("a batch value runs past its frame")
            out.append(bytes(payload[pos : pos + size]))
            pos += size
    except struct.error as exc:
        raise ProtocolError(f"truncated batch frame: {exc}") from None
    return out


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
_REASONS = {r.value: r for r in Reason if r not in (Reason.CRASHED, Reason.TOO_LARGE)}  # only the runner says these


def parse_verdict(payload: bytes) -> Outcome:
    """The :class:`Outcome` a ``V`` frame's payload describes.

    Raises:
        ProtocolError: not JSON, a kind or reason the filter process may not give, an accepted
            alert without an integer or string visit, a time that is not a finite number >= 0.
    """
    try:
        kind, reason, message, alert_id, visit, seconds = json.loads(payload)
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
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
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
