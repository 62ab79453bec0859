#!/usr/bin/env bash
# Build the project's two images from runtime/Dockerfile and operator/Dockerfile (build context: the
# repository root), as the README tells a user to, tagged as the Helm chart expects by default:
#   alertfilter-runner:$TAG  alertfilter-operator:$TAG        (TAG default: the chart's appVersion)
#
# The one difference from a user's build, on a machine where no registry answers: the build argument
# PYTHON_IMAGE names the local stand-in for python:3.11-slim (hack/base-image.sh). Docker's layer
# cache makes an unchanged rebuild take seconds. The legacy builder is used (DOCKER_BUILDKIT=0): the
# Dockerfiles' `# syntax=` line would make BuildKit pull its frontend image, which fails offline,
# and the legacy builder ignores it (the Dockerfiles use no BuildKit-only feature).
#
#   hack/build-images.sh          prints the two image names
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash hack/docker.sh
TAG=${TAG:-$(awk -F'"' '/^appVersion:/ {print $2}' helm/alert-filter-operator/Chart.yaml)}
args=()
if [ -n "${PYTHON_IMAGE:-}" ]; then
  args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
elif docker image inspect python:3.11-slim >/dev/null 2>&1 || timeout 120 docker pull -q python:3.11-slim >/dev/null 2>&1; then
  : # the Dockerfiles' own default base
else
  echo ">> no registry answers: the local base image stands in for python:3.11-slim" >&2
  args+=(--build-arg "PYTHON_IMAGE=$(bash hack/base-image.sh python)")
fi
export DOCKER_BUILDKIT=0
for name in runner:runtime operator:operator; do
  image="alertfilter-${name%%:*}:$TAG"
  echo ">> building $image from ${name#*:}/Dockerfile" >&2
  previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  if ! out=$(docker build "${args[@]}" -f "${name#*:}/Dockerfile" -t "$image" . 2>&1); then
    echo "$out" | tail -40 >&2
    echo "build-images: building $image failed" >&2
    exit 1
  fi
  # The image this build replaced is left without a name (about 1 GB each time the source changes):
  # remove it unless a container or another tag still uses it. Its build stage stays as the cache.
  current=$(docker image inspect --format '{{.Id}}' "$image")
  if [ -n "$previous" ] && [ "$previous" != "$current" ] \
     && [ -z "$(docker image inspect --format '{{join .RepoTags ""}}' "$previous" 2>/dev/null)" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
  echo "$image"
done
