#!/usr/bin/env bash
# The kind node image for Kubernetes $KUBE_VERSION (hack/versions.env), printed on stdout:
# - $KIND_NODE_IMAGE when set (e.g. kind's published kindest/node:v1.34.4 on GitHub's runners);
# - else the offline image alertfilter.local/kind-node:v$KUBE_VERSION-<hash of its recipe> when
#   Docker has it (kept; a change to this script, hack/kind/ or hack/versions.env makes a new one);
# - else kindest/node:v$KUBE_VERSION when a registry answers a pull of it;
# - else the offline image is built here, from Go modules and Debian packages only (~15 min cold on
#   2 cores, mostly Go; seconds of linking with a warm Go build cache):
#   1. kubelet, kubeadm, kubectl, kube-proxy and the control plane (hack/build-kube.sh --node),
#      CoreDNS and kube-router (hack/build-go-tools.sh), pause (static gcc build of its C source);
#   2. one image per component, tagged as `kubeadm config images list` names them, FROM the local
#      Debian image (hack/base-image.sh);
#   3. the node base: kind's own base-image files (sigs.k8s.io/kind, Apache-2.0) on Debian bookworm
#      with Debian's containerd, runc and CNI plugins; containerd's sandbox image set to our pause and
#      restrict_oom_score_adj on (kubelet's oom_score_adj -998 needs CAP_SYS_RESOURCE, which some
#      hosts' bounding set lacks);
#   4. the node: the binaries in /usr/bin, kube-router as /kind/manifests/default-cni.yaml (kind's
#      kindnetd is not served here), every image imported into the node's containerd, committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
V="v$KUBE_VERSION"
recipe=$(cat "$root/hack/kind-node-image.sh" "$root/hack/kind/"* "$root/hack/versions.env" | sha256sum | cut -c1-10)
OFFLINE=alertfilter.local/kind-node:$V-$recipe
PUBLISHED=kindest/node:$V
have() { docker image inspect "$1" >/dev/null 2>&1; }
say() { echo ">> $*" >&2; }

if [ -n "${KIND_NODE_IMAGE:-}" ]; then echo "$KIND_NODE_IMAGE"; exit 0; fi
bash "$root/hack/docker.sh"
if have "$OFFLINE"; then echo "$OFFLINE"; exit 0; fi
if have "$PUBLISHED" || timeout 300 docker pull -q "$PUBLISHED" >/dev/null 2>&1; then echo "$PUBLISHED"; exit 0; fi

say "no registry answers: building the kind node image $OFFLINE offline (first time only)"
export DOCKER_BUILDKIT=0
debian=$(bash "$root/hack/base-image.sh" debian)
kube=$(bash "$root/hack/build-kube.sh" --node)
coredns=$(bash "$root/hack/build-go-tools.sh" coredns | awk '{print $2}')
kuberouter=$(bash "$root/hack/build-go-tools.sh" kube-router | awk '{print $2}')
gomod=$(go env GOMODCACHE)
kindmod="$gomod/sigs.k8s.io/kind@v$KIND_VERSION"
[ -d "$kindmod" ] || (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download "sigs.k8s.io/kind@v$KIND_VERSION")
kubemod="$gomod/k8s.io/kubernetes@$V"
[ -d "$kubemod" ] || (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$V")

work=$(mktemp -d /var/tmp/alertfilter-kind-node.XXXXXX)
builder=""
cleanup() { [ -n "$builder" ] && docker rm -f "$builder" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT

# --- 1-2. component images --------------------------------------------------------------------
mapfile -t images < <("$kube/kubeadm" config images list --kubernetes-version "$V")
say "component images: ${images[*]}"
gcc -Os -static -o "$work/pause" "$kubemod/build/pause/linux/pause.c"
component() {  # image tag, binary path, entrypoint, extra Debian packages
  local tag=$1 bin=$2 entry=$3 pkgs=$4 ctx
  ctx="$work/img-$(basename "$bin")"
  mkdir -p "$ctx" && cp "$bin" "$ctx/"
  {
    echo "FROM $debian"
    [ -n "$pkgs" ] && echo "RUN apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*"
    echo "COPY $(basename "$bin") $entry"
    echo "ENTRYPOINT [\"$entry\"]"
  } > "$ctx/Dockerfile"
  docker build -q -t "$tag" "$ctx" >/dev/null 2>&1 || docker build -t "$tag" "$ctx" >&2
}
for img in "${images[@]}"; do
  name=$(basename "${img%%:*}")
  case "$name" in
    kube-apiserver|kube-controller-manager|kube-scheduler) component "$img" "$kube/$name" "/usr/local/bin/$name" "" ;;
    kube-proxy) component "$img" "$kube/kube-proxy" /usr/local/bin/kube-proxy "iptables conntrack ipset kmod" ;;
    etcd) component "$img" "$kube/etcd" /usr/local/bin/etcd "" ;;
    coredns) component "$img" "$coredns" /coredns "" ;;
    pause) component "$img" "$work/pause" /pause "" ;;
    *) echo "kind-node-image: no recipe for image $img" >&2; exit 1 ;;
  esac
done
router_image=alertfilter.local/kube-router:v$KUBE_ROUTER_VERSION
component "$router_image" "$kuberouter" /usr/local/bin/kube-router "iptables ipset iproute2 conntrack kmod ca-certificates"
images+=("$router_image")
pause_image=$(printf '%s\n' "${images[@]}" | grep /pause:)

# --- 3-4. the node ------------------------------------------------------------------------------
ctx="$work/node"
mkdir -p "$ctx/bin"
cp -r "$kindmod/images/base/files" "$ctx/files"
chmod -R u+w "$ctx/files"
for b in kubelet kubeadm kubectl; do cp "$kube/$b" "$ctx/bin/"; done
sed "s/KUBE_ROUTER_TAG/v$KUBE_ROUTER_VERSION/" "$root/hack/kind/default-cni.yaml" > "$ctx/default-cni.yaml"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $debian
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
RUN chmod 755 /usr/local/bin/* /kind/bin/* \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \\
      systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz \\
      fuse-overlayfs bash ca-certificates curl jq procps containerd runc containernetworking-plugins \\
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \\
 && ln -sf /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/local/bin/ \\
 && ln -sf /usr/sbin/runc /usr/local/sbin/runc \\
 && rm -rf /opt/cni/bin && mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin \\
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
 && ln -sf /usr/lib/systemd/systemd /sbin/init \\
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
 && systemctl mask systemd-binfmt.service \\
 && mkdir -p /etc/kubernetes/manifests /kind/manifests \\
 && ctr oci spec \\
      | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
 && sed -i -e 's|sandbox_image = .*|sandbox_image = "$pause_image"|' \\
      -e 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' /etc/containerd/config.toml
COPY bin/ /usr/bin/
COPY default-cni.yaml /kind/manifests/default-cni.yaml
RUN echo "$V" > /kind/version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
DOCKERFILE
say "node base image (Debian packages, kind's base files)"
docker build -q -t "$OFFLINE-stage" "$ctx" >/dev/null 2>&1 || docker build -t "$OFFLINE-stage" "$ctx" >&2

say "importing ${#images[@]} images into the node's containerd"
builder=$(docker run -d --privileged --entrypoint=sleep "$OFFLINE-stage" infinity)
docker exec "$builder" sh -c 'containerd >/var/log/containerd-build.log 2>&1 &'
for _ in $(seq 1 60); do docker exec "$builder" ctr version >/dev/null 2>&1 && break; sleep 0.5; done
for img in "${images[@]}"; do
  docker save "$img" | docker exec -i "$builder" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
done
docker exec "$builder" ctr --namespace=k8s.io images ls -q >&2
# sleep is PID 1 there and reaps nothing: a stopped containerd stays a zombie (state Z)
docker exec "$builder" sh -c 'pkill -x containerd; for i in $(seq 1 100); do
  [ -z "$(ps -C containerd -o stat= | grep -v Z)" ] && exit 0; sleep 0.2; done; exit 1'
docker exec "$builder" rm -f /var/log/containerd-build.log
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' "$builder" "$OFFLINE" >/dev/null
docker rmi "$OFFLINE-stage" >/dev/null 2>&1 || true
say "built $OFFLINE"
echo "$OFFLINE"
