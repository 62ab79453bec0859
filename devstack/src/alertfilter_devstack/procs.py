"""Small process helpers shared by the local-stack components."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def repo_root() -> Path:
    """The checkout's root: the folder holding ``hack/versions.env``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "versions.env").is_file():
            return parent
    raise RuntimeError(f"cannot find the repository root above {here}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group, wait up to ``grace_s`` seconds, then SIGKILL it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def wait_until(predicate, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None,
               log: Path | None = None, interval_s: float = 0.2) -> None:
    """Poll ``predicate()`` until true.

    Raises:
        RuntimeError: when ``proc`` exits first or ``timeout_s`` passes; the message names ``what``
            and carries the end of ``log``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with code {proc.returncode}; log {log}:\n"
                               + (tail(log) if log else ""))
        time.sleep(interval_s)
    raise RuntimeError(f"{what}: not ready after {timeout_s:.0f} s; log {log}:\n" + (tail(log) if log else ""))


def pid_alive(pid: int | None) -> bool:
    """True when a process with this pid exists (None and 0: False)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_group(pid: int, grace_s: float = 20) -> None:
    """SIGTERM the process group ``pid`` leads (or the process alone), SIGKILL after ``grace_s`` s."""
    if not pid_alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                return
            time.sleep(0.2)
