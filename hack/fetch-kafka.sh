#!/usr/bin/env bash
# Fetch Apache Kafka's broker (kafka_2.13) and MirrorMaker 2 (connect-mirror) jars from Maven Central.
#
# Output: prints the classpath directory .cache/kafka/<KAFKA_VERSION>/libs (all jars, one directory).
# Maven's local repository (~/.m2) is the download cache; the libs directory is rebuilt only when
# hack/versions.env changes KAFKA_VERSION.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$root/hack/versions.env"
dest="${KAFKA_LIBS_DIR:-$root/.cache/kafka/${KAFKA_VERSION}/libs}"
if [ -f "$dest/.complete" ]; then echo "$dest"; exit 0; fi
command -v mvn >/dev/null || { echo "fetch-kafka: Maven (mvn) is required; install it (apt-get install maven)" >&2; exit 1; }
command -v java >/dev/null || { echo "fetch-kafka: Java 17+ is required; not found on PATH" >&2; exit 1; }
echo ">> fetching Apache Kafka ${KAFKA_VERSION} jars from Maven Central (first time only)" >&2
work="$root/.cache/kafka/${KAFKA_VERSION}/pom"
mkdir -p "$work" "$dest.tmp"
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.alertfilter</groupId>
  <artifactId>kafka-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-mirror</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
# -Dstyle.color=never turns Maven's colours off; some Maven builds (Debian's 3.8.7) still print bare
# reset codes (ESC[0m) even then, so they are stripped too, with the empty lines they leave. pipefail
# keeps Maven's exit status.
esc=$'\033'
mvn -q -B -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dest.tmp" \
    -DincludeScope=runtime 2>&1 | { sed "s/${esc}\[[0-9;]*m//g" | grep -v '^[[:space:]]*$' || true; } >&2
rm -rf "$dest"; mv "$dest.tmp" "$dest"; touch "$dest/.complete"
echo "$dest"
