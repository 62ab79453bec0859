#!/usr/bin/env bash
# Build promtool, Prometheus's rule and query checker, from its Go module
# (github.com/prometheus/prometheus), pinned by PROMETHEUS_VERSION in hack/versions.env. Prometheus
# 3.X.Y is the Go module version v0.3XX.Y (3.16.0 is v0.316.0).
#
# Output: .cache/promtool/<PROMETHEUS_VERSION>/promtool (path printed on stdout). Rebuilt only when
# the version changes. Go's module and build caches stay where Go keeps them (go env GOMODCACHE /
# GOCACHE, machine-wide), so a fresh clone re-links in seconds. PROMTOOL_BIN_DIR overrides the folder.
#
# As hack/build-helm.sh: a wrapper module requires Prometheus at the pinned version and builds its
# cmd/promtool with -mod=mod (Prometheus's go.mod has exclude directives, which `go install
# pkg@version` refuses); no Git checkout, no prebuilt binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
: "${PROMETHEUS_VERSION:?PROMETHEUS_VERSION is not set in hack/versions.env}"
out="${PROMTOOL_BIN_DIR:-$root/.cache/promtool/${PROMETHEUS_VERSION}}"
if [ -x "$out/promtool" ]; then echo "$out/promtool"; exit 0; fi

command -v go >/dev/null || { echo "build-promtool: Go is required (https://go.dev/dl); not found on PATH" >&2; exit 1; }
major=${PROMETHEUS_VERSION%%.*}; rest=${PROMETHEUS_VERSION#*.}; minor=${rest%%.*}; patch=${rest#*.}
modver=$(printf 'v0.%d%02d.%d' "$major" "$minor" "$patch")
mkdir -p "$out"
work="$root/.cache/promtool/src-${PROMETHEUS_VERSION}"
mkdir -p "$work"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

echo ">> building promtool ${PROMETHEUS_VERSION} (module ${modver}; first time only, several minutes on 2 cores)" >&2
cd "$work"
cat > go.mod <<GOMOD
module alertfilter.local/promtoolwrapper

go 1.24

require github.com/prometheus/prometheus ${modver}
GOMOD
cat > tools.go <<'GO'
//go:build tools

// Package tools pins Prometheus's module for `go build github.com/prometheus/prometheus/cmd/promtool`.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
go mod tidy >&2
vpkg=github.com/prometheus/common/version
ldflags="-s -w -X $vpkg.Version=${PROMETHEUS_VERSION} -X $vpkg.Branch=release -X $vpkg.Revision=module-${modver}"
go build -trimpath -ldflags "$ldflags" -o "$out/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool >&2
mv "$out/promtool.tmp" "$out/promtool"
"$out/promtool" --version >&2
echo "$out/promtool"
