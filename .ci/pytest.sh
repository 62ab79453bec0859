#!/usr/bin/env bash
# Run the whole suite; exit non-zero when any test fails or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
set +e
.venv/bin/python -m pytest -ra tests "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$rc"
