#!/usr/bin/env bash
# Build the Go tools of the kind cluster from their Go modules, pinned in hack/versions.env:
#   kind                   sigs.k8s.io/kind            (creates the cluster from kind-config.yaml)
#   coredns                github.com/coredns/coredns  (the cluster DNS image of an offline node image)
#   kube-router            github.com/cloudnativelabs/kube-router/v2 (pod routes and NetworkPolicy)
#
#   hack/build-go-tools.sh [TOOL...]     default: all three; prints one "NAME PATH" line per tool
#
# Output: .cache/tools/<name>-<version>/<name>. Rebuilt only when its version changes; Go's module and
# build caches (machine-wide) make a rebuild in a fresh clone a link step of seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
command -v go >/dev/null || { echo "build-go-tools: Go is required; not found on PATH" >&2; exit 1; }
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

build() {  # name version module-path package
  local name=$1 version=$2 module=$3 pkg=$4 out
  out="$root/.cache/tools/$name-$version"
  if [ ! -x "$out/$name" ]; then
    echo ">> building $name v$version from its Go module" >&2
    mkdir -p "$out"
    # go install honours the module's own go.mod; GOBIN puts the binary in the cache folder
    GOBIN="$out/bin.tmp" go install -trimpath -ldflags "-s -w" "$pkg@v$version" >&2
    mv "$out/bin.tmp/$(basename "$pkg")" "$out/$name"
    rm -rf "$out/bin.tmp"
  fi
  echo "$name $out/$name"
  : "$module"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(kind coredns kube-router)
for t in "${tools[@]}"; do
  case "$t" in
    kind) build kind "$KIND_VERSION" sigs.k8s.io/kind sigs.k8s.io/kind ;;
    coredns) build coredns "$COREDNS_VERSION" github.com/coredns/coredns github.com/coredns/coredns ;;
    kube-router)
      build kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2 \
        github.com/cloudnativelabs/kube-router/v2/cmd/kube-router ;;
    *) echo "build-go-tools: unknown tool $t" >&2; exit 2 ;;
  esac
done
