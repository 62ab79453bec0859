#!/usr/bin/env bash
# The Prometheus Operator's CustomResourceDefinitions (monitoring.coreos.com: PodMonitor,
# PrometheusRule, ...), pinned by PROMETHEUS_OPERATOR_VERSION in hack/versions.env, for installing
# into the test API server so that its schemas validate the chart's monitoring manifests.
#
# Output: the folder of the CRD YAML files (one per kind, monitoring.coreos.com_<plural>.yaml),
# printed on stdout. They come from the project's Go module,
# github.com/prometheus-operator/prometheus-operator (example/prometheus-operator-crd/), fetched
# by `go mod download` through the Go module proxy into Go's module cache (go env GOMODCACHE,
# machine-wide, read-only), so a second call answers at once; never copied into the repository.
# PROMETHEUS_OPERATOR_CRDS_DIR overrides the whole thing (a folder of those files).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
if [ -n "${PROMETHEUS_OPERATOR_CRDS_DIR:-}" ]; then echo "$PROMETHEUS_OPERATOR_CRDS_DIR"; exit 0; fi
: "${PROMETHEUS_OPERATOR_VERSION:?PROMETHEUS_OPERATOR_VERSION is not set in hack/versions.env}"
command -v go >/dev/null || { echo "prometheus-operator-crds: Go is required (https://go.dev/dl); not found on PATH" >&2; exit 1; }
mod="github.com/prometheus-operator/prometheus-operator@v${PROMETHEUS_OPERATOR_VERSION}"
# Outside any module: -mod=mod keeps a surrounding go.work or vendor folder out of it.
dir=$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
crds="$dir/example/prometheus-operator-crd"
[ -f "$crds/monitoring.coreos.com_podmonitors.yaml" ] || {
  echo "prometheus-operator-crds: no CRDs in $crds (module $mod)" >&2; exit 1; }
echo "$crds"
