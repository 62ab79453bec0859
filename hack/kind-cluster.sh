#!/usr/bin/env bash
# The kind cluster shaped by kind-config.yaml (every node, label and taint in it), made from the node
# image hack/kind-node-image.sh gives (kind's published one where a registry answers, else the one
# built offline here, whose pod network and NetworkPolicy come from kube-router).
#
#   hack/kind-cluster.sh up              create, or reuse when every node runs; wait for nodes Ready
#   hack/kind-cluster.sh load IMAGE...   load local images into the worker nodes (kept when present)
#   hack/kind-cluster.sh kubeconfig      print the kubeconfig's path
#   hack/kind-cluster.sh down            delete the cluster
#
# CLUSTER (default: kind-config.yaml's name), KUBECONFIG_OUT (default .cache/kind/kubeconfig),
# KIND (default: kind built by hack/build-go-tools.sh), KUBECTL (default: hack/build-kube.sh's),
# KIND_NODE_IMAGE (see hack/kind-node-image.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CLUSTER=${CLUSTER:-$(awk '/^name:/ {print $2; exit}' kind-config.yaml)}
KUBECONFIG_OUT=${KUBECONFIG_OUT:-$root/.cache/kind/kubeconfig}
say() { echo ">> $*" >&2; }

bash hack/docker.sh
KIND=${KIND:-$(bash hack/build-go-tools.sh kind | awk '{print $2}')}
# the kubectl built with the control plane (the cluster's version), else one on PATH
KUBECTL=${KUBECTL:-$(bash hack/build-kube.sh 2>/dev/null)/kubectl}
[ -x "$KUBECTL" ] || KUBECTL=kubectl
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

nodes() { docker ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}'; }
running() { docker ps --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}'; }
expected_nodes() { grep -cE '^\s*- role:' kind-config.yaml; }

wait_ready() {
  say "waiting for the nodes and the cluster's system pods"
  k wait --for=condition=Ready nodes --all --timeout="${1:-300}s" >&2
  k -n kube-system rollout status deployment/coredns --timeout=180s >&2
}

up() {
  mkdir -p "$(dirname "$KUBECONFIG_OUT")"
  if [ "$(nodes | wc -l)" -gt 0 ]; then
    if [ "$(running | wc -l)" = "$(expected_nodes)" ]; then
      "$KIND" export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_OUT" >/dev/null 2>&1
      if wait_ready 120; then say "kind cluster $CLUSTER reused"; return; fi
    fi
    say "kind cluster $CLUSTER is incomplete or unhealthy: recreating it"
    "$KIND" delete cluster --name "$CLUSTER" >&2
  fi
  local image
  image=$(bash hack/kind-node-image.sh)
  # kind bind-mounts the host's /lib/modules into every node; some hosts have none
  [ -d /lib/modules ] || mkdir -p /lib/modules
  say "creating the kind cluster $CLUSTER from kind-config.yaml with $image"
  "$KIND" create cluster --name "$CLUSTER" --config kind-config.yaml --image "$image" \
    --kubeconfig "$KUBECONFIG_OUT" --retain >&2 || {
      "$KIND" export logs --name "$CLUSTER" "$root/.cache/kind/logs" >&2 || true
      "$KIND" delete cluster --name "$CLUSTER" >&2 || true
      echo "kind-cluster: creating the cluster failed; node logs in .cache/kind/logs" >&2; exit 1; }
  wait_ready 300
}

# An image is on a node when the node's containerd has its name and its config blob (the Docker
# image ID). kind load's own check asks crictl, which the offline node image lacks, so it would
# load every image again on every call (minutes for the runner image on five nodes).
present() {  # node image-name image-id
  local ref=$2
  case "${ref%%/*}" in *.*|*:*|localhost) [[ "$ref" == */* ]] || ref="docker.io/library/$ref" ;; *) ref="docker.io/library/$ref" ;; esac
  # grep without -q reads all its input: with -q, ctr could die of SIGPIPE and pipefail say "absent"
  docker exec "$1" ctr -n k8s.io images ls -q "name==$ref" | grep . >/dev/null &&
    docker exec "$1" ctr -n k8s.io content ls -q | grep -x "$3" >/dev/null
}

load() {
  local img id node need
  for img in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$img")
    need=()
    for node in $(running | grep -v control-plane); do
      present "$node" "$img" "$id" || need+=("$node")
    done
    [ ${#need[@]} -gt 0 ] || { say "$img is on every worker"; continue; }
    "$KIND" load docker-image --name "$CLUSTER" --nodes "$(IFS=,; echo "${need[*]}")" "$img" >&2
  done
}

case "${1:-}" in
  up) up; echo "$KUBECONFIG_OUT" ;;
  load) shift; load "$@" ;;
  kubeconfig) echo "$KUBECONFIG_OUT" ;;
  down) "$KIND" delete cluster --name "$CLUSTER" >&2 ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
