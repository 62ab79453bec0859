"""The runner's side of the filter process: start it, feed it batches, read its verdicts within the
hard limit, and replace it when it overruns or dies.

:meth:`FilterProcess.verdicts` gives one :class:`~alertfilter.outcome.Outcome` per message value,
in order, whatever the filter does: a call that outlives the hard limit is a ``filter-timeout``
error and a call that ends the process (``os._exit``, a signal, a segfault, the out-of-memory
killer) a ``filter-crashed`` error naming the exit code or signal; either way the process is
replaced and the rest of the batch goes to the new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from . import protocol as p
from .decoding import DecodingSpec
from .outcome import Kind, Outcome, Reason
from .schemas import SchemaSourceError

log = logging.getLogger("alertfilter.supervisor")

#: The dead-letter message of an alert whose filter call outlived the hard limit.
HARD_TIMEOUT_MESSAGE = "did not return within the hard limit of {limit:g} s; the filter process was replaced"
#: The dead-letter message of an alert whose filter call ended the filter process.
CRASH_MESSAGE = "the filter process died on this alert ({how}); a new filter process took over"
#: How long the filter process may take to load the filter and say it is ready, s.
START_TIMEOUT_S = 60.0
#: How long the runner gives the filter process to print its stack before ending it, s.
STACK_DUMP_WAIT_S = 0.3
#: The longest the runner waits without looking at its stop flag, s.
TICK_S = 0.2
#: Pipe capacity asked for (F_SETPIPE_SZ; Linux's default is 64 KiB): fewer switches per batch.
PIPE_BYTES = 1 << 20
#: Variables the filter process keeps from the runner's environment; every other one (Kafka
#: settings and credentials above all) is left out.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONHASHSEED")
_F_SETPIPE_SZ = 1031
_PR_SET_DUMPABLE = 4


class FilterLoadError(ValueError):
    """The filter cannot be loaded (the source, its entrypoint, its imports, the decoding options).

    Attributes:
        line, column: where in the source (0 when it is not the source's fault); message: why.
    """

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


class FilterProcessError(RuntimeError):
    """The filter process could not be started or ended before saying it was ready."""


@dataclass(frozen=True)
class FilterSpec:
    """What the filter process needs: JSON-compatible, and never a Kafka setting.

    Attributes:
        source: the filter's Python source; entrypoint: the class or function to use, or None.
        decoding: the decoding options; fields: ``--fields`` (``auto``, ``all`` or a list).
        visit_field, id_field: dotted paths; filter_timeout_s: the per-call budget, s (0: none).
        memory_limit_bytes: the process's address-space limit, bytes (0: none).
        log_format, log_level: as the runner's.
    """

    source: str
    entrypoint: str | None
    decoding: DecodingSpec
    visit_field: str
    id_field: str
    filter_timeout_s: float
    fields: str = "auto"
    memory_limit_bytes: int = 0
    log_format: str = "text"
    log_level: str = "info"

    def config(self) -> dict[str, Any]:
        """The ``C`` frame's content."""
        out = asdict(self)
        out["decoding"] = asdict(self.decoding)
        return out


@dataclass
class Ready:
    """What the filter process said once the filter was loaded: its name, the top-level fields it
    decodes (None: all) and whether that decoding is projected."""

    name: str
    fields: list[str] | None = None
    projected: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def protect_runner() -> None:
    """Make this process non-dumpable, so that a process of the same user without CAP_SYS_PTRACE
    (the filter process) cannot read its memory or environment through ``/proc`` (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def describe_exit(returncode: int | None) -> str:
    """``signal 9 (SIGKILL)`` or ``exit code 3``."""
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        try:
            return f"signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class _Died(Exception):
    """The filter process ended (or broke the protocol) while the runner waited on it."""


class FilterProcess:
    """One filter process at a time, replaced whenever it must be.

    Args:
        spec: what it runs.
        hard_timeout_s: the longest one message may take, s (0: no limit).
        start_timeout_s: the longest loading the filter may take, s.
    """

    def __init__(self, spec: FilterSpec, hard_timeout_s: float = 0.0, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.spec = spec
        self.hard_timeout_s = hard_timeout_s
        self.start_timeout_s = max(start_timeout_s, hard_timeout_s)
        self.ready: Ready | None = None
        #: How many filter processes were started (1 + the replacements).
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._req = self._rep = -1
        self._reader = p.FrameReader()
        self._busy = False  # verdicts of a batch are still due

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> Ready:
        """Start a filter process and wait until it has loaded the filter.

        Raises:
            FilterLoadError: the filter cannot be loaded (its source, an import it makes...).
            FilterProcessError: the process ended or did not answer within the start timeout.
        """
        self.close()
        protect_runner()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        with contextlib.suppress(OSError):  # pipe-max-size is lower: the default works, a little slower
            fcntl.fcntl(req_w, _F_SETPIPE_SZ, PIPE_BYTES)
        env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith("LC_")}
        args = [
            sys.executable,
            "-m",
            "alertfilter.filterproc",
            str(req_r),
            str(rep_w),
            str(os.getpid()),
            str(self.spec.memory_limit_bytes),
        ]
        try:
            self._proc = subprocess.Popen(
                args, pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, env=env, close_fds=True, start_new_session=True
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.starts += 1
        self._req, self._rep = req_w, rep_r
        os.set_blocking(self._req, False)
        os.set_blocking(self._rep, False)
        self._reader = p.FrameReader()
        self._busy = False
        deadline = time.monotonic() + self.start_timeout_s
        try:
            self._write([p.json_frame(p.CONFIG, self.spec.config())], deadline)
            kind, payload = self._next_frame(deadline)
        except _Died as exc:
            self.close()
            raise FilterProcessError(f"the filter process ended before it was ready ({exc})") from None
        if kind == p.LOAD_ERROR:
            err = json.loads(payload)
            self.close()
            raise FilterLoadError(str(err.get("message")), int(err.get("line") or 0), int(err.get("column") or 0))
        if kind != p.HELLO:
            self.close()
            raise FilterProcessError(f"the filter process answered {kind!r} instead of saying it was ready")
        hello = json.loads(payload)
        self.ready = Ready(str(hello.get("name")), hello.get("fields"), bool(hello.get("projected")))
        return self.ready

    def close(self) -> None:
        """End the filter process, if any (SIGKILL to its session: nothing it started survives)."""
        for fd in (self._req, self._rep):
            if fd >= 0:
                os.close(fd)
        self._req = self._rep = -1
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
            proc.wait()

    # --- batches ----------------------------------------------------------------------------
    def verdicts(
        self, values: list[bytes | None], stop: threading.Event | None = None, on_wait: Callable[[], None] | None = None
    ) -> Iterator[Outcome]:
        """One outcome per value, in order (never ``capped``: the runner caps).

        Stops early, without an outcome for the rest, when ``stop`` is set (checked every
        :data:`TICK_S` while waiting). ``on_wait`` is called at each such tick.

        Raises:
            SchemaSourceError: the schema of the next value cannot be had now (no outcome for it
                or the values after it).
            FilterLoadError, FilterProcessError: a replacement filter process could not start.
        """
        if self._busy or self._proc is None:  # a batch was left half done (a stop), or never started
            self.start()
        i = 0
        while i < len(values):
            current: Any = None
            try:
                self._busy = True
                self._write(p.batch_buffers(values[i:]), self._deadline(), stop)
                deadline = self._deadline()
                while i < len(values):
                    kind, payload = self._next_frame(deadline, stop, on_wait)
                    if kind == p.START:
                        current = json.loads(payload)
                    elif kind == p.VERDICT:
                        oc = p.parse_verdict(payload)
                        i += 1
                        current = None
                        if i == len(values):
                            self._busy = False
                        yield oc
                        deadline = self._deadline()
                    elif kind == p.SCHEMA_ERROR:
                        self._busy = False
                        raise SchemaSourceError(payload.decode("utf-8", "replace"))
                    else:
                        raise p.ProtocolError(f"unexpected reply {kind!r}")
            except _Stopped:
                return
            except TimeoutError:
                log.error(
                    "the filter call on alert %s did not return within the hard limit of %g s; ending the "
                    "filter process and starting a new one",
                    current,
                    self.hard_timeout_s,
                )
                self._dump_stack()
                self.close()
                yield Outcome(
                    Kind.ERROR, Reason.TIMEOUT, HARD_TIMEOUT_MESSAGE.format(limit=self.hard_timeout_s), current
                )
                i += 1
                self.start()
            except (_Died, p.ProtocolError) as exc:
                how = str(exc)
                log.error("the filter process died on alert %s (%s); starting a new one", current, how)
                self.close()
                yield Outcome(Kind.ERROR, Reason.CRASHED, CRASH_MESSAGE.format(how=how), current)
                i += 1
                self.start()

    def _dump_stack(self) -> None:
        """Ask the filter process to print where it is (its SIGUSR1 handler runs even while a C call
        holds the interpreter), so that the log shows where the filter was stuck."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.kill(self._proc.pid, signal.SIGUSR1)
            except ProcessLookupError:
                return
            time.sleep(STACK_DUMP_WAIT_S)

    # --- the pipes --------------------------------------------------------------------------
    def _deadline(self) -> float | None:
        return time.monotonic() + self.hard_timeout_s if self.hard_timeout_s else None

    def _died(self) -> _Died:
        """The process is gone (or going): wait for its status."""
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(2)
            except subprocess.TimeoutExpired:
                return _Died("it closed its reply pipe")
        return _Died(describe_exit(code))

    def _write(self, buffers: list[bytes], deadline: float | None, stop: threading.Event | None = None) -> None:
        """Write ``buffers`` to the request pipe before ``deadline``.

        Raises:
            TimeoutError, _Died, _Stopped.
        """
        views = [memoryview(b) for b in buffers if b]
        while views:
            try:
                n = os.writev(self._req, views[:512])
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, OSError):
                raise self._died() from None
            while n and views:
                if n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][n:]
                    n = 0
            if views:
                self._wait(self._req, deadline, stop, write=True)

    def _next_frame(
        self, deadline: float | None, stop: threading.Event | None = None, on_wait: Callable[[], None] | None = None
    ) -> tuple[bytes, bytes]:
        """The next reply frame.

        Raises:
            TimeoutError: none before ``deadline``. _Died: the process ended. _Stopped: ``stop`` was set.
            ProtocolError: a frame too large.
        """
        while True:
            for frame in self._reader.frames():
                return frame
            try:
                data = os.read(self._rep, 1 << 16)
            except BlockingIOError:
                self._wait(self._rep, deadline, stop, on_wait=on_wait)
                continue
            if not data:
                raise self._died()
            self._reader.feed(data)

    def _wait(
        self,
        fd: int,
        deadline: float | None,
        stop: threading.Event | None,
        write: bool = False,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        """Wait until ``fd`` is ready, at most one tick; raise when past the deadline or stopped."""
        if stop is not None and stop.is_set():
            raise _Stopped()
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise TimeoutError()
        tick = TICK_S if deadline is None else min(TICK_S, deadline - now)
        if write:
            select.select([], [fd], [], tick)
        else:
            select.select([fd], [], [], tick)
        if on_wait is not None:
            on_wait()


class _Stopped(Exception):
    """The stop flag was set while waiting."""
