"""The hard time limit of one message, for filter calls the in-process time budget cannot stop.

The per-alert budget (``--filter-timeout``) interrupts a filter with SIGALRM, which Python only
delivers between bytecodes. Two kinds of calls escape it: a filter that catches ``BaseException``
and carries on, and a C call that never returns to the interpreter (``sum(range(10**12))``), which
also holds the GIL so that no other Python thread of the process can run. The runner therefore
watches each message against a *hard limit* (``--filter-hard-timeout``) on three levels:

1. a daemon thread of the runner (see ``Runner._watch``), which works whenever the interpreter is
   free: it dead-letters the stuck alert, settles and commits the batch's processed messages up
   to and including it, and ends the process with exit code :data:`EXIT_HARD_TIMEOUT`;
2. a small watchdog *process* (this module's ``main``), which sees, through a page of shared
   memory (:class:`SharedState`), that the message is past its hard limit *and* that the runner's
   thread has stopped ticking (the interpreter is blocked). It stops the runner (SIGSTOP), writes
   the dead letter and commits, on behalf of the runner's group member, the partition's offset
   where the batch began with a marker naming the stuck offset (``skip``): the restarted runner
   replays the batch and passes over the marked alert without calling the filter. It then lets
   the runner go (SIGCONT);
3. a POSIX timer of the runner (:class:`NativeDeadline`) whose expiry calls ``_exit(70)`` from a
   thread the C library starts for it: it needs no Python, so it ends the process even while the
   interpreter is blocked. The runner's thread pushes it back at each tick; it fires only when
   the thread has not run for the hard limit plus :data:`DEADLINE_GRACE_S`.

The watchdog process commits with a transactional producer (``send_offsets_to_transaction`` with
the runner's consumer-group metadata), so it needs the ``transactionalId`` ACL of the runner's
prefix (``alertfilter-<group>``); without it the dead letter is still written but the offsets are
not, and the restarted runner meets the alert again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import mmap
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger("alertfilter.watchdog")

#: Exit code of a runner ended by its watchdog (EX_SOFTWARE): the pod restarts past the stuck alert.
EXIT_HARD_TIMEOUT = 70
#: How long after the runner's watchdog thread last ran the native deadline ends the process, on
#: top of the hard limit, s: time for the watchdog process to dead-letter the alert first.
DEADLINE_GRACE_S = 5.0
#: The watchdog process takes over when the runner's thread has not ticked for this long, s.
STALE_TICK_S = 2.0

# States of the runner's current message (SharedState.state).
IDLE = 0          # between messages
BUSY = 1          # processing a message (decode and filter call)
THREAD = 2        # the runner's watchdog thread is dead-lettering it
HELPER = 3        # the watchdog process is dead-lettering it
HELPER_DONE = 4   # the watchdog process has finished; the runner must exit

_MAGIC = b"AFW1"
# state u8, seq u64, t0 f64, partition i32, offset i64, batch start i64: written once per message
_MSG = struct.Struct("<B3xQdi4xqq")
_MSG_AT = 4
_TICK = struct.Struct("<d")
_TICK_AT = 48
_SHORT = struct.Struct("<H")
# the alert id: the number of the message it belongs to, its length, its text
_ALERT = struct.Struct("<QH238s")
_ALERT_AT, _ALERT_MAX = 64, 238
_CGMD_AT, _CGMD_MAX = 320, 3000
_SIZE = 4096


@dataclass(frozen=True)
class Snapshot:
    """What the runner is doing, as the watchdog process reads it.

    Attributes:
        state: one of IDLE, BUSY, THREAD, HELPER, HELPER_DONE.
        seq: number of the message (counts up from 1 per process).
        t0: ``time.monotonic()`` when the message's processing began, s.
        partition, offset: where the message is in the input topic.
        batch_start: offset of the batch's first message on that partition (where a restart resumes).
        tick: ``time.monotonic()`` of the runner's watchdog thread's last turn, s.
        alert_id: the alert's id as text ("" before decoding).
        cgmd: the runner's consumer-group metadata (``Consumer.consumer_group_metadata()``).
    """

    state: int
    seq: int
    t0: float
    partition: int
    offset: int
    batch_start: int
    tick: float
    alert_id: str
    cgmd: bytes


class SharedState:
    """One page of memory shared by the runner and its watchdog process (a temporary file, mapped).

    Args:
        fd: the file descriptor of an existing page (the watchdog process); None to create one.
    """

    def __init__(self, fd: int | None = None) -> None:
        self._file: IO[bytes] | None = None
        self._own_fd = fd is None
        if fd is None:
            if hasattr(os, "memfd_create"):  # no file system needed (read-only root file systems)
                fd = os.memfd_create("alertfilter-watchdog")
                os.ftruncate(fd, _SIZE)
            else:
                self._file = tempfile.TemporaryFile(prefix="alertfilter-watchdog-")
                self._file.truncate(_SIZE)
                fd = self._file.fileno()
        self.fd = fd
        self._seq = 0
        self._mm = mmap.mmap(fd, _SIZE)
        if self._own_fd:
            self._mm[0:4] = _MAGIC
        elif self._mm[0:4] != _MAGIC:
            raise ValueError("not an alertfilter watchdog page")

    # the runner's main thread
    def begin(self, seq: int, t0: float, partition: int, offset: int, batch_start: int) -> None:
        """Record that message ``seq`` (at ``partition``/``offset``) is being processed since ``t0``."""
        self._seq = seq
        _MSG.pack_into(self._mm, _MSG_AT, BUSY, seq, t0, partition, offset, batch_start)

    def set_alert_id(self, alert_id: Any) -> None:
        """Record the id of the current message's alert (shown in the watchdog's log and dead letter)."""
        data = str(alert_id).encode("utf-8", "replace")[:_ALERT_MAX]
        _ALERT.pack_into(self._mm, _ALERT_AT, self._seq, len(data), data)

    def end(self) -> bool:
        """Record that the current message is done; False (and nothing changed) when a watchdog has
        taken it over."""
        mm = self._mm
        if mm[_MSG_AT] != BUSY:
            return False
        mm[_MSG_AT] = IDLE
        return True

    @property
    def state(self) -> int:
        """The state byte (IDLE, BUSY, THREAD, HELPER or HELPER_DONE)."""
        return self._mm[_MSG_AT]

    @state.setter
    def state(self, value: int) -> None:
        self._mm[_MSG_AT] = value

    def set_tick(self, now: float) -> None:
        """Record that the runner's watchdog thread ran at ``now`` (``time.monotonic()``)."""
        _TICK.pack_into(self._mm, _TICK_AT, now)

    def set_cgmd(self, cgmd: bytes) -> None:
        """Record the runner's consumer-group metadata (changes at each rebalance)."""
        data = bytes(cgmd)[:_CGMD_MAX]
        self._mm[_CGMD_AT + 2:_CGMD_AT + 2 + len(data)] = data
        _SHORT.pack_into(self._mm, _CGMD_AT, len(data))

    # the watchdog process
    def snapshot(self) -> Snapshot:
        """The current content of the page."""
        state, seq, t0, partition, offset, batch_start = _MSG.unpack_from(self._mm, _MSG_AT)
        (tick,) = _TICK.unpack_from(self._mm, _TICK_AT)
        alert_seq, n_alert, alert_bytes = _ALERT.unpack_from(self._mm, _ALERT_AT)
        (n_cgmd,) = _SHORT.unpack_from(self._mm, _CGMD_AT)
        alert_id = alert_bytes[:min(n_alert, _ALERT_MAX)].decode("utf-8", "replace") if alert_seq == seq else ""
        cgmd = bytes(self._mm[_CGMD_AT + 2:_CGMD_AT + 2 + min(n_cgmd, _CGMD_MAX)])
        return Snapshot(state, seq, t0, partition, offset, batch_start, tick, alert_id, cgmd)

    def close(self) -> None:
        """Unmap the page (and close it, in the process that made it)."""
        self._mm.close()
        if self._file is not None:
            self._file.close()
        elif self._own_fd:
            os.close(self.fd)


class _SigvalUnion(ctypes.Union):
    _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]


class _Sigevent(ctypes.Structure):  # struct sigevent, Linux (glibc and musl): 64 bytes
    _fields_ = [("sigev_value", _SigvalUnion), ("sigev_signo", ctypes.c_int), ("sigev_notify", ctypes.c_int),
                ("sigev_notify_function", ctypes.c_void_p), ("sigev_notify_attributes", ctypes.c_void_p),
                ("_pad", ctypes.c_byte * 32)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class NativeDeadline:
    """A POSIX timer (Linux) whose expiry calls the C library's ``_exit(code)`` in a thread of its own.

    It ends the process even while the interpreter is blocked in a C call that holds the GIL, where
    no Python code (signal handlers and other threads included) can run. :attr:`available` is False
    where such timers cannot be made (then :meth:`arm` and :meth:`disarm` do nothing).

    Args:
        code: the exit code.
    """

    _SIGEV_THREAD = 2
    _CLOCK_MONOTONIC = 1

    def __init__(self, code: int = EXIT_HARD_TIMEOUT) -> None:
        self.available = False
        self._timer = ctypes.c_void_p()
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            lib = libc if hasattr(libc, "timer_create") else ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1")
            self._settime = lib.timer_settime
            self._settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            self._settime.restype = ctypes.c_int
            self._event = _Sigevent()
            self._event.sigev_notify = self._SIGEV_THREAD
            self._event.sigev_value.sival_int = code
            self._event.sigev_notify_function = ctypes.cast(libc._exit, ctypes.c_void_p).value
            create = lib.timer_create
            create.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
            create.restype = ctypes.c_int
            if create(self._CLOCK_MONOTONIC, ctypes.byref(self._event), ctypes.byref(self._timer)) != 0:
                return
        except (OSError, AttributeError, TypeError):
            return
        self._spec = _Itimerspec()
        self._off = _Itimerspec()
        self.available = True

    def arm(self, seconds: float) -> None:
        """End the process ``seconds`` from now unless re-armed or disarmed before."""
        if not self.available:
            return
        whole = int(seconds)
        self._spec.it_value.tv_sec = whole
        self._spec.it_value.tv_nsec = max(int((seconds - whole) * 1e9), 1 if whole == 0 else 0)
        self._settime(self._timer, 0, ctypes.byref(self._spec), None)

    def disarm(self) -> None:
        """Stop the countdown."""
        if self.available:
            self._settime(self._timer, 0, ctypes.byref(self._off), None)


def spawn(state: SharedState, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start the watchdog process for this runner (``python -m alertfilter.watchdog FD``).

    Args:
        state: the page it watches (its descriptor is passed on).
        config: JSON-compatible settings, sent on its stdin (they may hold Kafka credentials):
            ``runner_pid``, ``hard_timeout_s``, ``native_exit`` (bool), ``log_format`` and what
            :func:`alertfilter.runner.recover_stuck_message` needs.
    """
    proc = subprocess.Popen([sys.executable, "-m", "alertfilter.watchdog", str(state.fd)], pass_fds=(state.fd,),
                            stdin=subprocess.PIPE, close_fds=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config).encode())
    proc.stdin.close()
    return proc


def _runner_alive(pid: int) -> bool:
    return os.getppid() == pid


def _take_over(state: SharedState, snap: Snapshot, cfg: dict[str, Any]) -> bool:
    """Stop the runner, check it is still stuck on ``snap``'s message, dead-letter it, let it go.

    Returns:
        True when it took over; False when the runner had moved on meanwhile.
    """
    pid = int(cfg["runner_pid"])
    try:
        os.kill(pid, signal.SIGUSR1)  # the runner dumps its threads' tracebacks (faulthandler): where it is stuck
        time.sleep(0.2)
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    now = state.snapshot()
    if now.state != BUSY or now.seq != snap.seq:
        os.kill(pid, signal.SIGCONT)
        return False
    state.state = HELPER
    try:
        from .runner import recover_stuck_message

        recover_stuck_message(cfg, now)
    except Exception:  # noqa: BLE001 - log, and still let the runner end
        log.exception("the watchdog could not dead-letter the stuck alert; the restarted runner will meet it again")
    finally:
        state.state = HELPER_DONE
        os.kill(pid, signal.SIGCONT)
    # The runner's native deadline ends it with exit code 70; should it not (no such timers here, or
    # it did not fire), end it anyway so that it restarts.
    wait_s = 2.0 if not cfg.get("native_exit") else float(cfg["hard_timeout_s"]) + DEADLINE_GRACE_S + 10.0
    end = time.monotonic() + wait_s
    while _runner_alive(pid) and time.monotonic() < end:
        time.sleep(0.25)
    if _runner_alive(pid):
        log.error("the runner did not end after the watchdog dead-lettered its stuck alert; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def watch(state: SharedState, cfg: dict[str, Any], poll_s: float = 0.25) -> None:
    """The watchdog process's loop: returns when the runner is gone or after a take-over."""
    pid = int(cfg["runner_pid"])
    hard = float(cfg["hard_timeout_s"])
    while _runner_alive(pid):
        time.sleep(poll_s)
        snap = state.snapshot()
        if snap.state != BUSY:
            continue
        now = time.monotonic()
        if now - snap.t0 < hard + poll_s or now - snap.tick < STALE_TICK_S:
            continue
        if _take_over(state, snap, cfg):
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m alertfilter.watchdog FD`` (settings as JSON on stdin)."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the runner; this process follows it (SIGTERM ends it)
    cfg = json.loads(sys.stdin.read())
    from .logs import setup_logging

    setup_logging(cfg.get("log_format", "text"), cfg.get("log_level", "info"))
    state = SharedState(int(args[0]))
    watch(state, cfg)
    while _runner_alive(int(cfg["runner_pid"])):
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
