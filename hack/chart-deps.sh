#!/usr/bin/env bash
# Fill helm/alert-filter-operator/charts/ with the chart's declared dependency, Strimzi's own
# strimzi-kafka-operator 1.2.0 chart, as `helm dependency build` would on a machine that reaches
# its OCI registry. Offline it is packaged from $STRIMZI_CHART_DIR (default
# ../shared/strimzi-chart/strimzi-kafka-operator; never copied into the repository: charts/ is
# ignored by git). Kept when present. Prints the package's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chart="$root/helm/alert-filter-operator"
src=${STRIMZI_CHART_DIR:-$root/../shared/strimzi-chart/strimzi-kafka-operator}
version=$(awk '/name: strimzi-kafka-operator/ {f=1} f && /version:/ {print $2; exit}' "$chart/Chart.yaml")
out="$chart/charts/strimzi-kafka-operator-$version.tgz"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
helm=${HELM:-$(bash "$root/hack/build-helm.sh")}
mkdir -p "$chart/charts"
if [ -f "$src/Chart.yaml" ]; then
  have=$(awk '/^version:/ {print $2; exit}' "$src/Chart.yaml")
  [ "$have" = "$version" ] || { echo "chart-deps: $src is version $have, the chart needs $version" >&2; exit 1; }
  "$helm" package "$src" --destination "$chart/charts" >&2
else
  echo ">> no Strimzi chart at $src: helm dependency build (needs its OCI registry)" >&2
  "$helm" dependency build "$chart" >&2
fi
echo "$out"
