"""The project's images, built as `make images` builds them (hack/build-images.sh, cached), and run
as containers: the runner image's science packages inside the filter process's sandbox, its module
list, and a group's own image built FROM it (examples/custom-image).

Docker is needed: without it these tests fail under CI=true and are skipped elsewhere. Every build
and the use of the shared engine go through ``flock /tmp/kind.lock`` (several sessions share it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The machine's shared lock of the Docker engine and the kind cluster.
LOCK = "/tmp/kind.lock"


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def lock_held_by_us() -> bool:
    """True when a process this test runs under (``flock /tmp/kind.lock pytest ...``) holds the lock:
    taking it again would wait for ever."""
    try:
        inode = os.stat(LOCK).st_ino
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    holders = {int(f[4]) for f in (line.split() for line in locks) if len(f) > 5 and f[5].endswith(f":{inode}")}
    return bool(holders & _ancestors())


def locked(cmd: Sequence[str]) -> list[str]:
    """``cmd`` under the shared engine's lock, where flock exists and this test does not hold it already."""
    return ["flock", LOCK, *cmd] if shutil.which("flock") and not lock_held_by_us() else list(cmd)


def docker_or_fail() -> None:
    """Skip (fail under CI=true) when no Docker engine answers."""
    ok = shutil.which("docker") is not None and (
        subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    )
    if not ok:
        message = "no Docker engine answers (hack/docker.sh starts one): the image tests need it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """``{"runner": image, "operator": image}`` as hack/build-images.sh names them (built when stale)."""
    docker_or_fail()
    r = subprocess.run(locked(["bash", "hack/build-images.sh"]), cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    names = r.stdout.split()
    return {
        "runner": next(n for n in names if n.startswith("alertfilter-runner:")),
        "operator": next(n for n in names if n.startswith("alertfilter-operator:")),
    }


def run_in(image: str, *args: str, mounts: Sequence[tuple[Path, str]] = (), entrypoint: str | None = None,
           user: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``docker run --rm`` of ``image`` confined as a runner pod is (read-only root filesystem, a
    writable /tmp, no capability, no new privileges), with read-only ``mounts`` (host path, container path)."""
    cmd = ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--network", "none"]  # fmt: skip
    for host, path in mounts:
        cmd += ["-v", f"{host}:{path}:ro"]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    if user:
        cmd += ["--user", user]
    return subprocess.run([*cmd, image, *args], capture_output=True, text=True, timeout=timeout)
