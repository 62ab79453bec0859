"""The filter process's seccomp filter: the author's code may signal, trace and reconfigure only its
own process, never the runner (which runs as the same user, so the kernel's permission checks alone
would let it).

:func:`confine` installs a seccomp-BPF program (``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``,
allowed unprivileged once ``PR_SET_NO_NEW_PRIVS`` is set, and stacked on the pod's RuntimeDefault
profile) before any of the author's code runs. The refused calls fail with ``EPERM``
(``PermissionError`` in Python), which the filter process reports as a ``filter-exception``:

- signals: ``kill``, ``tkill``, ``rt_sigqueueinfo`` only to this process's own pid;
  ``tgkill`` and ``rt_tgsigqueueinfo`` only within its own thread group. ``kill(0, ...)``,
  ``kill(-pgid, ...)`` and ``kill(-1, ...)`` are refused;
- never: ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_open``, ``pidfd_getfd``,
  ``pidfd_send_signal``, ``process_madvise``, ``kcmp``;
- another process's signal-on-I/O ownership: ``fcntl(F_SETOWN)`` only to this pid (or 0),
  ``F_SETOWN_EX`` and the ``FIOSETOWN``/``SIOCSPGRP`` ioctls never (SIGIO's default action ends a process);
- another process's limits and scheduling: ``prlimit64`` (``RLIMIT_CPU`` would end the runner),
  ``setpriority``, ``ioprio_set``, ``sched_setaffinity``/``setscheduler``/``setparam``/``setattr``
  only on this process (pid 0 or its own).

The pid is fixed when the program is installed: a child the author's code forks inherits the
program with its parent's pid, so it may signal that parent (the filter process) but neither itself
nor its own children. Any other architecture than the one the process runs as (an ``int 0x80``
call on x86_64, the x32 ABI) is refused outright.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass

# linux/filter.h, linux/seccomp.h, linux/audit.h, linux/prctl.h
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | errno.EPERM
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_X32_SYSCALL_BIT = 0x40000000

# offsets in struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_NR, _ARCH = 0, 4


def _arg(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` (little-endian; pids, commands and resources are ints)."""
    return 16 + 8 * i


_F_SETOWN, _F_SETOWN_EX = 8, 15
_FIOSETOWN, _SIOCSPGRP = 0x8901, 0x8902
_PRIO_PROCESS, _IOPRIO_WHO_PROCESS = 0, 1


@dataclass(frozen=True)
class Arch:
    """One architecture's audit token and the numbers of the calls the program restricts."""

    audit: int
    nr: dict[str, int]
    x32: bool = False


# x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: include/uapi/asm-generic/unistd.h
_COMMON = {"pidfd_send_signal": 424, "pidfd_open": 434, "pidfd_getfd": 438, "process_madvise": 440}
ARCHES = {
    "x86_64": Arch(
        0xC000003E,
        {
            "ioctl": 16,
            "kill": 62,
            "fcntl": 72,
            "ptrace": 101,
            "setpgid": 109,
            "setsid": 112,
            "rt_sigqueueinfo": 129,
            "setpriority": 141,
            "sched_setparam": 142,
            "sched_setscheduler": 144,
            "tkill": 200,
            "sched_setaffinity": 203,
            "tgkill": 234,
            "ioprio_set": 251,
            "rt_tgsigqueueinfo": 297,
            "prlimit64": 302,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "kcmp": 312,
            "sched_setattr": 314,
            **_COMMON,
        },
        x32=True,
    ),
    "aarch64": Arch(
        0xC00000B7,
        {
            "ioctl": 29,
            "fcntl": 25,
            "ioprio_set": 30,
            "ptrace": 117,
            "setpgid": 154,
            "setsid": 157,
            "sched_setparam": 118,
            "sched_setscheduler": 119,
            "sched_setaffinity": 122,
            "kill": 129,
            "tkill": 130,
            "tgkill": 131,
            "rt_sigqueueinfo": 138,
            "setpriority": 140,
            "rt_tgsigqueueinfo": 240,
            "prlimit64": 261,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "kcmp": 272,
            "sched_setattr": 274,
            **_COMMON,
        },
    ),
}
ARCHES["arm64"] = ARCHES["aarch64"]

#: Calls refused whatever their arguments.
NEVER = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "process_madvise",
    "kcmp",
    # a child in a session or group of its own would escape the killpg that ends the filter process
    "setsid",
    "setpgid",
)
#: Calls allowed only when the argument at this index is this process's pid (``0``: also 0, "myself").
SELF_ONLY = {
    "kill": (0, False),
    "tkill": (0, False),
    "rt_sigqueueinfo": (0, False),
    "tgkill": (0, False),  # the kernel checks that the thread is in that thread group
    "rt_tgsigqueueinfo": (0, False),
    "prlimit64": (0, True),
    "sched_setaffinity": (0, True),
    "sched_setscheduler": (0, True),
    "sched_setparam": (0, True),
    "sched_setattr": (0, True),
}


class _Program:
    """A tiny BPF assembler: instructions with symbolic jump targets, resolved by :meth:`code`."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def load(self, offset: int) -> None:
        self.ins.append((_LD_W_ABS, 0, 0, offset))

    def jump(self, op: int, k: int, yes: str | int = 0, no: str | int = 0) -> None:
        """``op`` (jeq, jge) against ``k``: to label ``yes``/``no`` (0: the next instruction)."""
        self.ins.append((op, yes, no, k))

    def ret(self, value: int) -> None:
        self.ins.append((_RET_K, 0, 0, value))

    def code(self) -> bytes:
        """The program as ``struct sock_filter[]``.

        Raises:
            ValueError: a jump farther than 255 instructions.
        """
        out = bytearray()
        for at, (op, yes, no, k) in enumerate(self.ins):
            jt, jf = (self.labels[t] - at - 1 if isinstance(t, str) else t for t in (yes, no))
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError("a jump out of range")
            out += struct.pack("=HBBI", op, jt, jf, k)
        return bytes(out)


def program(arch: Arch, pid: int) -> bytes:
    """The BPF program (``struct sock_filter[]``) for ``arch`` and this process's ``pid``."""
    prog = _Program()
    prog.load(_ARCH)
    prog.jump(_JEQ_K, arch.audit, 0, "deny")
    prog.load(_NR)
    if arch.x32:
        prog.jump(_JGE_K, _X32_SYSCALL_BIT, "deny", 0)
    for name in NEVER:
        prog.jump(_JEQ_K, arch.nr[name], "deny", 0)
    for name in SELF_ONLY:
        prog.jump(_JEQ_K, arch.nr[name], f"self:{name}", 0)
    for name in ("fcntl", "ioctl", "setpriority", "ioprio_set"):
        prog.jump(_JEQ_K, arch.nr[name], name, 0)
    prog.ret(_RET_ALLOW)
    for name, (index, zero_is_self) in SELF_ONLY.items():
        prog.label(f"self:{name}")
        prog.load(_arg(index))
        prog.jump(_JEQ_K, pid & 0xFFFFFFFF, "allow", 0)
        if zero_is_self:
            prog.jump(_JEQ_K, 0, "allow", 0)
        prog.ret(_RET_EPERM)
    prog.label("fcntl")  # fcntl(fd, F_SETOWN, pid): only to itself (or 0: no owner); F_SETOWN_EX never
    prog.load(_arg(1))
    prog.jump(_JEQ_K, _F_SETOWN_EX, "deny", 0)
    prog.jump(_JEQ_K, _F_SETOWN, 0, "allow")
    prog.load(_arg(2))
    prog.jump(_JEQ_K, 0, "allow", 0)
    prog.jump(_JEQ_K, pid & 0xFFFFFFFF, "allow", "deny")
    prog.label("ioctl")  # ioctl(fd, FIOSETOWN or SIOCSPGRP, &pid): the pid is behind a pointer, never
    prog.load(_arg(1))
    prog.jump(_JEQ_K, _FIOSETOWN, "deny", 0)
    prog.jump(_JEQ_K, _SIOCSPGRP, "deny", "allow")
    for name, who in (("setpriority", _PRIO_PROCESS), ("ioprio_set", _IOPRIO_WHO_PROCESS)):
        prog.label(name)  # (which, who, ...): only which = one process, and who = itself
        prog.load(_arg(0))
        prog.jump(_JEQ_K, who, 0, "deny")
        prog.load(_arg(1))
        prog.jump(_JEQ_K, 0, "allow", 0)
        prog.jump(_JEQ_K, pid & 0xFFFFFFFF, "allow", "deny")
    prog.label("deny")
    prog.ret(_RET_EPERM)
    prog.label("allow")
    prog.ret(_RET_ALLOW)
    return prog.code()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class ConfineError(OSError):
    """The kernel refused the seccomp filter."""


def confine() -> bool:
    """Install the program in the calling process (and every thread and child it starts afterwards);
    it cannot be removed. Sets ``PR_SET_NO_NEW_PRIVS`` first.

    Returns:
        True when installed; False on an architecture this module does not know (or not Linux).

    Raises:
        ConfineError: the kernel refused it (a kernel without seccomp filters).
    """
    arch = ARCHES.get(platform.machine())
    if arch is None or os.uname().sysname != "Linux":
        return False
    code = program(arch, os.getpid())
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0 or (
        prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0
    ):
        err = ctypes.get_errno()
        raise ConfineError(err, f"cannot install the filter process's seccomp filter: {os.strerror(err)}")
    return True
