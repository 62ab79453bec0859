#!/usr/bin/env bash
# Fetch the JMX Prometheus exporter Java agent (io.prometheus.jmx:jmx_prometheus_javaagent) from
# Maven Central: what Strimzi runs in a KafkaMirrorMaker2's pods when it has a metricsConfig.
#
# Output: prints the agent jar's path, .cache/jmx-exporter/<JMX_EXPORTER_VERSION>/jmx_prometheus_javaagent.jar.
# Maven's local repository (~/.m2) is the download cache; the jar is copied again only when
# hack/versions.env changes JMX_EXPORTER_VERSION.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
dest="$root/.cache/jmx-exporter/${JMX_EXPORTER_VERSION}"
jar="$dest/jmx_prometheus_javaagent.jar"
if [ -f "$jar" ]; then echo "$jar"; exit 0; fi
command -v mvn >/dev/null || { echo "fetch-jmx-exporter: Maven (mvn) is required; install it (apt-get install maven)" >&2; exit 1; }
echo ">> fetching the JMX exporter agent ${JMX_EXPORTER_VERSION} from Maven Central (first time only)" >&2
mkdir -p "$dest"
esc=$'\033'
mvn -q -B -Dstyle.color=never dependency:copy \
    -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:${JMX_EXPORTER_VERSION}" \
    -DoutputDirectory="$dest.tmp" 2>&1 | { sed "s/${esc}\[[0-9;]*m//g" | grep -v '^[[:space:]]*$' || true; } >&2
mv "$dest.tmp/jmx_prometheus_javaagent-${JMX_EXPORTER_VERSION}.jar" "$jar.tmp" && rm -rf "$dest.tmp" && mv "$jar.tmp" "$jar"
echo "$jar"
