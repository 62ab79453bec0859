"""``python -m alertfilter_operator``: run the operator (all namespaces, or ALERTFILTER_OPERATOR_NAMESPACES)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys


def main() -> int:
    import kopf

    from .config import OperatorConfig

    try:
        cfg = OperatorConfig.from_env()
    except ValueError as exc:
        print(f"alertfilter-operator: {exc}", file=sys.stderr)
        return 2
    log_format = (
        kopf.LogFormat.JSON
        if os.environ.get("ALERTFILTER_OPERATOR_LOG_FORMAT", "json") == "json"
        else kopf.LogFormat.FULL
    )
    kopf.configure(verbose=os.environ.get("ALERTFILTER_OPERATOR_VERBOSE") == "1", log_format=log_format)
    from . import handlers  # noqa: F401 - registers the handlers

    asyncio.run(
        kopf.operator(
            clusterwide=not cfg.namespaces,
            namespaces=list(cfg.namespaces),
            liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz",
            standalone=os.environ.get("ALERTFILTER_OPERATOR_STANDALONE", "1") == "1",
        )
    )
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
