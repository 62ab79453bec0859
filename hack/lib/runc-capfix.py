#!/usr/bin/env python3
"""A runc wrapper for hosts whose capability bounding set lacks capabilities Docker grants.

Docker 20.10 gives a ``--privileged`` container (kind's nodes are privileged) every capability it
knows; when the host's bounding set (``CapBnd`` in /proc/self/status) lacks one, runc fails with
"unable to apply caps: operation not permitted". This wrapper removes the capabilities absent from
the bounding set from the OCI spec runc is about to use, then execs the real runc:

- ``runc ... create|run ... --bundle DIR``: DIR/config.json, ``process.capabilities``;
- ``runc ... exec ... --process FILE``: the process spec FILE, ``capabilities``.

Registered by hack/docker.sh as dockerd's default runtime only on hosts that need it.
Errors: none of its own; whatever runc says.
"""

from __future__ import annotations

import json
import os
import sys

REAL_RUNC = os.environ.get("ALERTFILTER_REAL_RUNC", "/usr/sbin/runc")
# capability(7) numbers 0..40, in order
CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
]


def missing_caps() -> set[str]:
    """Names (``CAP_*``) of the capabilities absent from this process's bounding set."""
    with open("/proc/self/status") as fh:
        bnd = next(int(line.split()[1], 16) for line in fh if line.startswith("CapBnd:"))
    return {f"CAP_{name}" for bit, name in enumerate(CAP_NAMES) if not bnd >> bit & 1}


def strip(caps: dict[str, list[str]], drop: set[str]) -> None:
    for kind, names in caps.items():
        if isinstance(names, list):
            caps[kind] = [n for n in names if n not in drop]


def fix(path: str, nested: bool) -> None:
    """Rewrite the spec at ``path`` in place (``nested``: capabilities under ``process``)."""
    drop = missing_caps()
    if not drop or not os.path.exists(path):
        return
    with open(path) as fh:
        spec = json.load(fh)
    caps = (spec.get("process") or {}).get("capabilities") if nested else spec.get("capabilities")
    if not caps:
        return
    strip(caps, drop)
    with open(path, "w") as fh:
        json.dump(spec, fh)


def option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def main() -> None:
    args = sys.argv[1:]
    if "create" in args or "run" in args:
        bundle = option(args, "--bundle") or option(args, "-b")
        if bundle:
            fix(os.path.join(bundle, "config.json"), nested=True)
    elif "exec" in args:
        process = option(args, "--process") or option(args, "-p")
        if process:
            fix(process, nested=False)
    os.execv(REAL_RUNC, [REAL_RUNC, *args])


if __name__ == "__main__":
    main()
