#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from their Go modules;
# with --node also kubelet, kubeadm and kube-proxy (what an offline kind node image needs).
#
#   hack/build-kube.sh [--node]
#
# Output: .cache/kube/<KUBE_VERSION>-etcd<ETCD_VERSION>/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
# (+ kubelet, kubeadm, kube-proxy with --node)
# Rebuilt only when a pinned version in hack/versions.env changes. The Go module and build caches
# stay where Go keeps them (go env GOMODCACHE / GOCACHE), so a rebuild after a bump is incremental.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/* staging module with
# ./staging/src/k8s.io/<name>. A wrapper module requires k8s.io/kubernetes and replaces each staging
# module with its published v0.<minor>.<patch> instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
out="${KUBE_BIN_DIR:-$root/.cache/kube/${KUBE_VERSION}-etcd${ETCD_VERSION}}"
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
[ "${1:-}" = --node ] && kube_bins+=(kubelet kubeadm kube-proxy)
bins=(etcd "${kube_bins[@]}")
missing=0
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build-kube: Go is required (https://go.dev/dl); not found on PATH" >&2; exit 1; }
mkdir -p "$out"
work="$root/.cache/kube/src-${KUBE_VERSION}-etcd${ETCD_VERSION}"
mkdir -p "$work/etcd" "$work/kube"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

if [ ! -x "$out/etcd" ]; then
  echo ">> building etcd v${ETCD_VERSION} (first time only)" >&2
  cd "$work/etcd"
  cat > go.mod <<GOMOD
module alertfilter.local/etcdwrapper

go 1.24

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
GOMOD
  cat > main.go <<'GO'
// Command etcd is etcd's own server main, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" . >&2
  mv "$out/etcd.tmp" "$out/etcd"
fi

kminor=$(echo "$KUBE_VERSION" | cut -d. -f2-)
cd "$work/kube"
if [ ! -f go.mod ]; then
  echo ">> resolving k8s.io/kubernetes v${KUBE_VERSION} staging modules" >&2
  gomod=$(cd "$work/kube" && GOFLAGS="" go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module alertfilter.local/kubewrapper"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes v${KUBE_VERSION}"
    echo
    grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "$gomod" \
      | awk -v v="v0.${kminor}" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod.tmp
  mv go.mod.tmp go.mod
fi
major=$(echo "$KUBE_VERSION" | cut -d. -f1); minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=v${KUBE_VERSION} -X $vpkg.gitMajor=${major} -X $vpkg.gitMinor=${minor} -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
for b in "${kube_bins[@]}"; do
  if [ ! -x "$out/$b" ]; then
    echo ">> building $b v${KUBE_VERSION} (first time only; several minutes on 2 cores)" >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
    mv "$out/$b.tmp" "$out/$b"
  fi
done
echo "$out"
