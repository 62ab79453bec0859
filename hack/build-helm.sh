#!/usr/bin/env bash
# Build the helm command line from its Go module (helm.sh/helm/v3), pinned by HELM_VERSION in
# hack/versions.env.
#
# Output: .cache/helm/<HELM_VERSION>/helm (path printed on stdout). Rebuilt only when the version
# changes. Go's module and build caches stay where Go keeps them (go env GOMODCACHE / GOCACHE), so
# a rebuild after a bump is incremental. HELM_BIN_DIR overrides the output folder.
#
# A tiny wrapper module requires helm.sh/helm/v3 at the pinned version and builds its cmd/helm
# package with -mod=mod, so helm's own go.mod decides every other dependency's version (the
# same approach as hack/build-kube.sh; no Git checkout, no download of a prebuilt binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
: "${HELM_VERSION:?HELM_VERSION is not set in hack/versions.env}"
out="${HELM_BIN_DIR:-$root/.cache/helm/${HELM_VERSION}}"
if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi

command -v go >/dev/null || { echo "build-helm: Go is required (https://go.dev/dl); not found on PATH" >&2; exit 1; }
mkdir -p "$out"
work="$root/.cache/helm/src-${HELM_VERSION}"
mkdir -p "$work"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

echo ">> building helm v${HELM_VERSION} (first time only; a few minutes on 2 cores)" >&2
cd "$work"
cat > go.mod <<GOMOD
module alertfilter.local/helmwrapper

go 1.24

require helm.sh/helm/v3 v${HELM_VERSION}
GOMOD
# The wrapper has no code of its own: a blank import keeps `go mod tidy` from dropping the requirement.
cat > tools.go <<'GO'
//go:build tools

// Package tools pins helm's module for `go build helm.sh/helm/v3/cmd/helm`.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
GO
go mod tidy >&2
# The variables helm's own Makefile sets: its version, and the Kubernetes version that `helm template`
# and `helm lint` assume (.Capabilities.KubeVersion, deprecated-API checks), from the client-go it uses.
kver=$(go list -m -f '{{.Version}}' k8s.io/client-go)   # v0.<minor>.<patch>
kminor=$(echo "$kver" | cut -d. -f2)
vpkg=helm.sh/helm/v3/internal/version
ldflags="-s -w -X $vpkg.version=v${HELM_VERSION} -X $vpkg.gitTreeState=clean"
ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${kminor}"
ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${kminor}"
go build -trimpath -ldflags "$ldflags" -o "$out/helm.tmp" helm.sh/helm/v3/cmd/helm >&2
mv "$out/helm.tmp" "$out/helm"
"$out/helm" version --short >&2
echo "$out/helm"
