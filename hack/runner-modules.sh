#!/usr/bin/env bash
# Regenerate runtime/src/alertfilter/runner-modules.txt: the modules a filter can import in the runner
# image, which `alertfilter check` and the operator's admission webhook (neither runs in that image)
# judge a filter's imports by. Run after changing the image's packages (runtime/pyproject.toml's
# extras, constraints.txt, runtime/Dockerfile); tests/images/test_runner_image.py fails until then.
#
#   hack/runner-modules.sh [IMAGE]     default: the runner image hack/build-images.sh builds
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
image=${1:-}
if [ -z "$image" ]; then
  image=$(bash hack/build-images.sh | grep alertfilter-runner)
fi
out=runtime/src/alertfilter/runner-modules.txt
# -I: the filter process's own view (no working directory, no PYTHON* variables, no user site)
docker run --rm --entrypoint python "$image" -I -m alertfilter.imports > "$out.tmp"
mv "$out.tmp" "$out"
echo ">> $out: $(grep -vc '^#' "$out") modules of $image" >&2
# The list is package data: the image built before it changed carries the old one.
[ -n "${1:-}" ] || bash hack/build-images.sh >/dev/null
