#!/usr/bin/env bash
# Local base images for machines where no container registry answers (idempotent; images kept
# when present in Docker's image store):
#   alertfilter.local/debian:bookworm      debootstrap --variant=minbase bookworm, imported into Docker
#   alertfilter.local/python:3.11-slim     that + Debian's Python 3.11 (python, pip, venv, headers):
#                                          the stand-in for python:3.11-slim in the project's Dockerfiles
# Both trust the host's extra CA certificates (/usr/local/share/ca-certificates): HTTPS from inside
# a build (pip) goes through this machine's intercepting proxy.
#
#   hack/base-image.sh [debian|python]    default: both; prints the image names
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/hack/docker.sh"
DEBIAN_IMAGE=alertfilter.local/debian:bookworm
PYTHON_IMAGE=alertfilter.local/python:3.11-slim
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
have() { docker image inspect "$1" >/dev/null 2>&1; }

debian() {
  have "$DEBIAN_IMAGE" && return
  command -v debootstrap >/dev/null || {
    [ "$(id -u)" = 0 ] || { echo "base-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; }
  local rootfs
  rootfs=$(mktemp -d /var/tmp/alertfilter-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the folder is this call's
  trap "rm -rf '$rootfs'" RETURN
  echo ">> debootstrap bookworm (minbase) into $rootfs (first time only, ~1 min)" >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  # the official images keep no apt lists or caches; neither does this one
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
}

python() {
  have "$PYTHON_IMAGE" && return
  debian
  local ctx
  ctx=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  mkdir -p "$ctx/ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $DEBIAN_IMAGE
COPY ca/ /usr/local/share/ca-certificates/
# What the project's Dockerfiles use of python:3.11-slim: python, pip, python -m venv, and the C
# headers its build stage compiles the runtime's small extension against.
RUN apt-get update \\
 && apt-get install --yes --no-install-recommends ca-certificates python3 python3-venv python3-pip \\
      python3-dev python-is-python3 passwd \\
 && update-ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
DOCKERFILE
  echo ">> building $PYTHON_IMAGE from $DEBIAN_IMAGE (first time only)" >&2
  docker build -q -t "$PYTHON_IMAGE" "$ctx" >/dev/null
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(debian python)
for t in "${targets[@]}"; do
  case "$t" in
    debian) debian; echo "$DEBIAN_IMAGE" ;;
    python) python; echo "$PYTHON_IMAGE" ;;
    *) echo "base-image: unknown image $t" >&2; exit 2 ;;
  esac
done
