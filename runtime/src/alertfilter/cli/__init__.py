"""The ``alertfilter`` command line: run, check, produce, consume, simulate, report, lean.

:mod:`.args` defines the arguments (those of ``run`` from :data:`alertfilter.settings.OPTIONS`, each
also an ``ALERTFILTER_<OPTION>`` variable, which is how the operator configures runner pods);
:mod:`.commands` carries them out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alertfilter.cli import commands, lean, report
from alertfilter.cli.args import kafka_env, resolve_run_args
from alertfilter.cli.commands import check_warnings, visit_cap
from alertfilter.logs import JsonFormatter
from alertfilter.settings import hard_timeout

__all__ = [
    "JsonFormatter",
    "build_parser",
    "check_warnings",
    "hard_timeout",
    "kafka_env",
    "main",
    "resolve_run_args",
    "visit_cap",
]

COMMANDS = {
    "run": commands.cmd_run,
    "check": commands.cmd_check,
    "produce": commands.cmd_produce,
    "consume": commands.cmd_consume,
    "simulate": commands.cmd_simulate,
    "report": report.cmd_report,
    "lean": lean.cmd_lean,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``alertfilter`` parser (``args.func`` is the command to call)."""
    from alertfilter.cli.args import build_parser as build

    return build(COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alertfilter`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
