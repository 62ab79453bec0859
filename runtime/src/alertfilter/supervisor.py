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
import fcntl
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Sequence

from . import protocol as p
from .filterenv import KEPT_ENV, filter_home, protect_runner
from .filterspec import FilterLoadError, FilterProcessError, FilterSpec, Ready
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
#: Bytes of the shared region a batch's values cross in: 200 alerts of 300 KB (DMTN-102: alerts are
#: 50-250 KB); memory is taken only as it is written, and larger values go through the pipe.
REGION_BYTES = 64 << 20
_F_SETPIPE_SZ = 1031


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


class _Stopped(Exception):
    """The stop flag was set while waiting."""


class FilterProcess:
    """One filter process at a time, replaced whenever it must be.

    Args:
        spec: what it runs.
        hard_timeout_s: the longest one message may take, s (0: no limit).
        start_timeout_s: the longest loading the filter may take, s.
        region_bytes: the shared region a batch's values cross in (the rest go through the pipe).
    """

    def __init__(
        self,
        spec: FilterSpec,
        hard_timeout_s: float = 0.0,
        start_timeout_s: float = START_TIMEOUT_S,
        region_bytes: int = REGION_BYTES,
    ) -> None:
        self.spec = spec
        self.hard_timeout_s = hard_timeout_s
        self.start_timeout_s = max(start_timeout_s, hard_timeout_s)
        self.ready: Ready | None = None
        #: How many filter processes were started (1 + the replacements).
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._page: p.ProgressPage | None = None
        self._region: p.DataRegion | None = None
        self.region_bytes = region_bytes
        self._req = self._rep = -1
        self._reader = p.FrameReader()
        self._out: list[memoryview] = []  # request bytes not yet written
        self._seq = 0  # batches sent to this process
        self._sent: list[int] = []  # the current batch: indices of the caller's values, in order
        self._got = 0  # verdicts received for it
        self._progress: tuple[int, int] = (0, p.ProgressPage.IDLE)
        self._since = 0.0  # when the runner first saw that progress (or began waiting)
        self._home: str | None = None  # the filter process's own HOME, removed with it
        self._left: float | None = None  # when the last frame was handed to the runner (None: waiting since _since)

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
        self._page = p.ProgressPage()
        self._region = p.DataRegion(self.region_bytes)
        env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith("LC_")}
        self._home = filter_home(env)
        if self._home is not None:
            env["HOME"] = self._home
        fds = (req_r, rep_w, self._page.fd, self._region.fd)
        args = [
            sys.executable,
            "-I",  # isolated: neither the working directory nor PYTHON* variables can put modules first
            "-m",
            "alertfilter.filterproc",
            *map(str, fds),
            str(self.region_bytes),
            str(os.getpid()),
            str(self.spec.memory_limit_bytes),
        ]
        try:
            # cwd "/": the runner's working directory may be writable by the filter (the image's
            # /tmp), and a package planted there must never be imported before the sandbox is on.
            self._proc = subprocess.Popen(
                args,
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
                start_new_session=True,
                cwd="/",
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.starts += 1
        self._req, self._rep = req_w, rep_r
        os.set_blocking(self._req, False)
        os.set_blocking(self._rep, False)
        self._reader = p.FrameReader()
        self._out, self._seq, self._sent, self._got = [], 0, [], 0
        deadline = time.monotonic() + self.start_timeout_s
        try:
            self._out = [memoryview(p.json_frame(p.CONFIG, self.spec.config()))]
            kind, payload = self._next_frame(None, deadline)
        except (_Died, TimeoutError, p.ProtocolError) as exc:
            self.close()
            raise FilterProcessError(f"the filter process ended before it was ready ({exc or 'no answer'})") from None
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
            # The whole session, even when the process itself has already ended: its children
            # live on in its group (the sandbox refuses setsid/setpgid, so they cannot leave it).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                if proc.poll() is None:
                    proc.kill()
            proc.wait()
        if self._page is not None:
            self._page.close()
            self._page = None
        if self._region is not None:
            self._region.close()
            self._region = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    # --- batches ----------------------------------------------------------------------------
    def verdicts(
        self, values: Sequence[bytes | None], stop: threading.Event | None = None
    ) -> Generator[Outcome, None, None]:
        """Hand ``values`` to the filter process now, and return their outcomes as an iterator: one
        per value, in order (never ``capped``: the runner caps). The filter process works on them
        while the caller does something else (settles the previous batch).

        The iterator stops early, without an outcome for the rest, when ``stop`` is set (checked
        every :data:`TICK_S` while waiting). Close it (or exhaust it) before the next call.

        Raises:
            FilterLoadError, FilterProcessError: a new filter process could not start (now, or
                from the iterator: a replacement).
            SchemaSourceError: from the iterator: the schema of the next value cannot be had now
                (no outcome for it or the values after it).
        """
        if self._sent or self._out or self._proc is None or self._proc.poll() is not None:
            self.start()  # a batch left half done (a stop), none started yet, or the process ended between batches
        self._submit(list(range(len(values))), values)
        if self._out:
            with contextlib.suppress(_Died):  # seen, and dealt with, while waiting for its verdicts
                self._write_some()
        return self._collect(values, stop)

    def _collect(self, values: Sequence[bytes | None], stop: threading.Event | None) -> Generator[Outcome, None, None]:
        """The outcomes of ``values`` (submitted), in order, replacing the process when it must be."""
        ready: dict[int, Outcome] = {}
        nxt = 0
        while nxt < len(values):
            if nxt in ready:
                oc = ready.pop(nxt)
                nxt += 1
                yield oc
                continue
            try:
                kind, payload = self._next_frame(stop)
                if kind == p.VERDICT:
                    for oc in p.parse_verdicts(payload):
                        if self._got >= len(self._sent):
                            raise p.ProtocolError("more verdicts than values")
                        ready[self._sent[self._got]] = oc
                        self._got += 1
                    if self._got == len(self._sent):
                        self._sent, self._got = [], 0
                elif kind == p.SCHEMA_ERROR:
                    self._sent, self._got = [], 0
                    raise SchemaSourceError(payload.decode("utf-8", "replace"))
                else:
                    raise p.ProtocolError(f"unexpected reply {kind!r}")
            except _Stopped:
                return
            except (TimeoutError, _Died, p.ProtocolError) as exc:
                self._replace(exc, values, ready)

    def _submit(self, indices: list[int], values: Sequence[bytes | None]) -> None:
        """Queue the values at ``indices`` as the next batch."""
        self._sent, self._got = indices, 0
        if indices:
            self._seq += 1
            self._progress = (self._seq, -1)
            self._out = [memoryview(b) for b in p.batch_buffers([values[i] for i in indices], self._region) if b]
            self._since, self._left = time.monotonic(), None

    def _replace(self, exc: Exception, values: Sequence[bytes | None], ready: dict[int, Outcome]) -> None:
        """The process overran the hard limit or died: dead-letter the value it was on, start a new
        one, and send it the values of the batch still without a verdict."""
        assert self._page is not None
        seq, pos, alert_id = self._page.read()
        on = pos if seq == self._seq and self._got <= pos < len(self._sent) else self._got
        victim = self._sent[on]
        if on != pos:
            alert_id = None  # between values: the first without a verdict takes the blame
        again = self._sent[self._got : on] + self._sent[on + 1 :]  # verdicts lost with the process, and the rest
        if isinstance(exc, TimeoutError):
            log.error(
                "the filter call on alert %s did not return within the hard limit of %g s; ending the filter "
                "process and starting a new one",
                alert_id,
                self.hard_timeout_s,
            )
            self._dump_stack()
            self.close()
            ready[victim] = Outcome(
                Kind.ERROR, Reason.TIMEOUT, HARD_TIMEOUT_MESSAGE.format(limit=self.hard_timeout_s), alert_id
            )
        else:
            how = str(exc) if isinstance(exc, _Died) else f"it broke the protocol: {exc}"
            self.close()
            log.error("the filter process died on alert %s (%s); starting a new one", alert_id, how)
            ready[victim] = Outcome(Kind.ERROR, Reason.CRASHED, CRASH_MESSAGE.format(how=how), alert_id)
        self.start()
        self._submit(again, values)

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

    def _next_frame(self, stop: threading.Event | None = None, deadline: float | None = None) -> tuple[bytes, bytes]:
        """The next reply frame, writing what is queued for the process meanwhile.

        Raises:
            TimeoutError: the process stayed on one value past the hard limit, or nothing came
                before ``deadline``. _Died: the process ended. _Stopped: ``stop`` was set.
            ProtocolError: a frame too large.
        """
        if self._left is not None:  # only time spent waiting counts: not the runner's own between frames
            self._since += time.monotonic() - self._left
        while True:
            for frame in self._reader.frames():
                self._left = time.monotonic()
                return frame
            if stop is not None and stop.is_set():
                raise _Stopped()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()
            self._check_progress(now)
            readable, writable, _ = select.select([self._rep], [self._req] if self._out else [], [], TICK_S)
            if writable:
                self._write_some()
            if readable:
                try:
                    data = os.read(self._rep, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    raise self._died()
                self._reader.feed(data)

    def _check_progress(self, now: float) -> None:
        """Raise TimeoutError when the process has been on one value for the hard limit."""
        if not self.hard_timeout_s or self._page is None or not self._sent:
            return
        seq, pos, _ = self._page.read()
        # The page is writable by the filter's own code: only a move forward to a value of this
        # batch that it can be on (verdicts come back FLUSH_VERDICTS at a time) restarts the clock,
        # so rewriting the page cannot hold off the hard limit.
        forward = seq == self._seq and self._progress[1] < pos < len(self._sent)
        if forward and self._got <= pos < self._got + p.FLUSH_VERDICTS:
            self._progress, self._since = (seq, pos), now
        elif now - self._since >= self.hard_timeout_s:
            raise TimeoutError()

    def _write_some(self) -> None:
        """Write what the pipe takes of the queued request bytes."""
        try:
            n = os.writev(self._req, self._out[:512])
        except BlockingIOError:
            return
        except OSError:
            raise self._died() from None
        out = self._out
        while n and out:
            if n >= len(out[0]):
                n -= len(out[0])
                out.pop(0)
            else:
                out[0] = out[0][n:]
                n = 0
