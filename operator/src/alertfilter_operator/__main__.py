"""``python -m alertfilter_operator``: run the operator (all namespaces, or ALERTFILTER_OPERATOR_NAMESPACES).

The command line of the operator, as ``kopf run`` is kopf's: it reads the configuration once, so
that a wrong variable stops it at once (exit code 2, one line naming the variable) before it
connects anywhere; takes from it what kopf needs before any handler runs (which namespaces to
watch, the liveness port); and hands it to the startup handler in kopf's ``memo``.

Other variables: ALERTFILTER_OPERATOR_LOG_FORMAT (``json``, the default, or anything else for
kopf's plain text), ALERTFILTER_OPERATOR_VERBOSE (``1`` for debug logs),
ALERTFILTER_OPERATOR_STANDALONE (``1``, the default: no peering with other operator instances).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import kopf

from .config import OperatorConfig


def main() -> int:
    """Run until stopped; returns the exit code (2 when the configuration is wrong)."""
    try:
        config = OperatorConfig.from_env()
    except ValueError as exc:
        print(f"alertfilter-operator: {exc}", file=sys.stderr)
        return 2
    json_logs = os.environ.get("ALERTFILTER_OPERATOR_LOG_FORMAT", "json") == "json"
    kopf.configure(
        verbose=os.environ.get("ALERTFILTER_OPERATOR_VERBOSE") == "1",
        log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL,
        # as `kopf run` does: text lines start with the object, "[namespace/name] ..."; JSON
        # records carry it in their own fields
        log_prefix=None,
    )
    from . import handlers  # noqa: F401 - registers the handlers with kopf (after logging is set up)

    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
            standalone=os.environ.get("ALERTFILTER_OPERATOR_STANDALONE", "1") == "1",
            memo=kopf.Memo(config=config),
        )
    )
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
