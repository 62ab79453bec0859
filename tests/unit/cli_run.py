"""Running the ``alertfilter`` command line in process, as the CLI tests do."""

from __future__ import annotations

import pytest

from alertfilter.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``alertfilter ARGS`` in process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
