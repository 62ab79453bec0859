"""What the filter process is given of the runner's environment, and what keeps the runner's own
out of its reach: the variables it keeps, a HOME of its own, and the runner made non-dumpable."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile

#: Variables the filter process keeps from the runner's environment; every other one (Kafka
#: settings and credentials above all) is left out. The XDG folders hold the science packages'
#: settings (the runner image's astropy.cfg); the thread counts bound numeric libraries' pools.
KEPT_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONHASHSEED",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)

_PR_SET_DUMPABLE = 4


def protect_runner() -> None:
    """Make this process non-dumpable, so that a process of the same user without CAP_SYS_PTRACE
    (the filter process) cannot read its memory or environment through ``/proc`` (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def filter_home(env: dict[str, str]) -> str | None:
    """A HOME of the filter process's own when the runner's is not a folder it can write (the
    runner image's user has ``/nonexistent``): a new private folder under the temporary directory
    (the pod's ``/tmp``), where packages such as astropy may keep their caches; None when HOME will do."""
    home = env.get("HOME")
    if home and os.path.isdir(home) and os.access(home, os.W_OK | os.X_OK):
        return None
    return tempfile.mkdtemp(prefix="alertfilter-home-")
