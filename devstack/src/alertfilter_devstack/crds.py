"""Installing Strimzi's CRDs and the project's into a control plane."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .procs import repo_root


def strimzi_crds_dir() -> Path:
    """Strimzi's CRDs: ``$STRIMZI_CRDS_DIR``, default ``../shared/strimzi-crds`` beside the checkout."""
    return Path(os.environ.get("STRIMZI_CRDS_DIR", repo_root().parent / "shared" / "strimzi-crds")).resolve()


def install_crds(cp, timeout_s: float = 60.0) -> None:
    """Install Strimzi's CRDs and ``crds/*.yaml``; wait until they are established and published.

    Raises:
        FileNotFoundError: no Strimzi CRDs where expected. RuntimeError: kubectl failed or timed out.
    """
    crd_files = sorted(strimzi_crds_dir().glob("*-Crd-*.yaml"))
    if not crd_files:
        raise FileNotFoundError(f"Strimzi CRDs not found in {strimzi_crds_dir()}; set STRIMZI_CRDS_DIR")
    for f in [*crd_files, *sorted((repo_root() / "crds").glob("*.yaml"))]:
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    deadline = time.monotonic() + timeout_s
    # a CRD has no conditions for a moment after its creation; then the OpenAPI document
    # (kubectl explain) lags the CRDs a little
    while (cp.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all", check=False).returncode
           or cp.kubectl("explain", "alertfilter.spec", check=False).returncode):
        if time.monotonic() > deadline:
            raise RuntimeError("the API server never published the AlertFilter schema")
        time.sleep(0.5)
