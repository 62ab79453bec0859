#!/usr/bin/env bash
# End to end on a kind cluster shaped by kind-config.yaml: both images built and loaded into kind,
# Strimzi from its OCI chart, this chart, the example FilterPool and AlertFilters, alerts produced
# to the central Kafka, and every filter's output and dead-letter topics counted and compared with
# an offline backtest (`alertfilter check`) of the same filter on the same alerts, as `make demo`
# compares its counts with an independent run.
#
#   hack/e2e-kind.sh STEP...    steps: cluster data images load strimzi install filters produce verify
#                               diagnostics delete manifests; `all` runs cluster..verify
#
# .github/workflows/e2e-kind.yaml runs the steps one by one; the cluster, the images and the chart's
# dependency come from the same scripts as the local stack's (hack/kind-cluster.sh, build-images.sh,
# chart-deps.sh), there with kind's published node image (KIND_NODE_IMAGE). On a machine with Docker
# and Go, `hack/e2e-kind.sh all` runs the whole chain (Strimzi's images need a registry).
# Needs a Python with the runtime installed (`pip install -c constraints.txt -e runtime pyyaml`):
# PYTHON, default .venv/bin/python when it exists, else python3.
#
# Alerts: the shared real Rubin alerts when $ALERTFILTER_DATA (default ../shared/data) has them,
# else simulated ones (`alertfilter simulate`, the lsst.alert schema) with one extra AlertFilter
# written for their fields. Either way the example filters run on them and their counts must
# match the backtest (on simulated alerts they find no diaSource.visit: every alert is a dead letter).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CLUSTER=${CLUSTER:-alert-filter}                  # kind-config.yaml's name
KAFKA_NS=${KAFKA_NS:-kafka}                       # the chart's release, the central and the pool Kafka
FILTERS_NS=${FILTERS_NS:-alerts}                  # the AlertFilters
RELEASE=${RELEASE:-alert-filter}
TAG=${TAG:-e2e}
WORK=${WORK:-$root/build/e2e}
CHART=helm/alert-filter-operator
DATA=${ALERTFILTER_DATA:-$root/../shared/data}
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x "$root/.venv/bin/python" ] && PY="$root/.venv/bin/python"
HELM=${HELM:-$(command -v helm || bash "$root/hack/build-helm.sh")}
# the kubeconfig hack/kind-cluster.sh writes (context kind-$CLUSTER)
export KUBECONFIG=${KUBECONFIG:-$(CLUSTER=$CLUSTER bash "$root/hack/kind-cluster.sh" kubeconfig)}
SIM_SCHEMA_ID=1                                   # the simulator's schema has no version to derive one from
WAIT=${WAIT:-900s}

say() { printf '\n>> %s\n' "$*" >&2; }
die() { printf 'e2e-kind: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "kind-$CLUSTER" "$@"; }

step_cluster() {
  say "the kind cluster $CLUSTER (kind-config.yaml; created, or reused when it runs)"
  CLUSTER=$CLUSTER bash hack/kind-cluster.sh up >/dev/null
}

# Alerts, their writer schemas (<id>.avsc, what the runners read with --schema-dir), the extra
# AlertFilter for simulated alerts, and the expected counts from the offline backtest.
step_data() {
  rm -rf "$WORK" && mkdir -p "$WORK/alerts" "$WORK/schemas" "$WORK/manifests"
  if [ -f "$DATA/alerts/rubin-v10_0-real-20.avro" ]; then
    say "real Rubin alerts from $DATA"
    cp "$DATA/alerts/rubin-v10_0-real-20.avro" "$DATA/alerts/rubin-v10_0-history-4.avro" "$WORK/alerts/"
    echo real > "$WORK/mode"
  else
    say "no real alerts in $DATA: simulating (lsst.alert schema)"
    "$PY" -m alertfilter simulate --out "$WORK/alerts/simulated.avro" --n-visits 6 --alerts-per-visit 200 \
      --cutout-bytes 1000 --seed 6 >&2
    echo simulated > "$WORK/mode"
    cat > "$WORK/manifests/alertfilter-bright-i-simulated.yaml" <<'YAML'
# For simulated alerts (lsst.alert): i band, brighter than magnitude 20; visits are CCD-visits.
apiVersion: alerts.lsst.io/v1alpha1
kind: AlertFilter
metadata:
  name: bright-i-simulated
spec:
  pool: pool-a
  visitField: diaSource.ccdVisitId
  idField: alertId
  maxAlertsPerVisit: 5
  source: |
    def bright_i(alert):
        src = alert["diaSource"]
        return src["filterName"] == "i" and src["psFlux"] is not None and src["psFlux"] > 36308
YAML
  fi
  for f in examples/alertfilter-*.yaml; do
    case "$f" in *broken*) continue ;; esac
    cp "$f" "$WORK/manifests/"
  done
  "$PY" - "$WORK" "$SIM_SCHEMA_ID" <<'PY'
"""Write <schema id>.avsc per alert file and expected.json: per AlertFilter, the backtest's counts."""
import json, subprocess, sys, tempfile
from pathlib import Path

import fastavro, yaml
from alertfilter.schemas import rubin_schema_id

work, sim_id = Path(sys.argv[1]), int(sys.argv[2])
files = sorted(str(p) for p in (work / "alerts").glob("*.avro"))
for f in files:
    with open(f, "rb") as fh:
        schema = fastavro.reader(fh).writer_schema
    sid = rubin_schema_id(schema.get("name", "")) or sim_id
    (work / "schemas" / f"{sid}.avsc").write_text(json.dumps(schema))
expected = {}
for m in sorted((work / "manifests").glob("alertfilter-*.yaml")):
    body = yaml.safe_load(m.read_text())
    spec = body["spec"]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as src:
        src.write(spec["source"])
    args = [sys.executable, "-m", "alertfilter", "check", src.name, "--alerts", *files, "--json",
            "--visit-field", spec.get("visitField", "diaSource.visit"), "--id-field", spec.get("idField", "diaSourceId"),
            "--filter-timeout", str(spec.get("filterTimeoutSeconds", 1.0))]
    cap = spec.get("maxAlertsPerVisit", 20)
    args += ["--max-alerts-per-visit", str(cap)] if cap else ["--no-visit-cap"]
    if spec.get("entrypoint"):
        args += ["--entrypoint", spec["entrypoint"]]
    res = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    expected[body["metadata"]["name"]] = {"output": res["accepted"], "deadletter": res["errors"], "alerts": res["alerts"]}
(work / "expected.json").write_text(json.dumps(expected, indent=2))
print(json.dumps(expected, indent=2))
PY
}

# The two images (build context: the repository root), and the e2e runner image: the runner image
# plus the writer schemas and the alert files, for the runners (--schema-dir) and the producer pod.
step_images() {
  [ -f "$WORK/mode" ] || die "run the data step first"
  say "building alertfilter-operator:$TAG and alertfilter-runner:$TAG (hack/build-images.sh)"
  TAG="$TAG-base" bash hack/build-images.sh >/dev/null
  docker tag "alertfilter-operator:$TAG-base" "alertfilter-operator:$TAG"
  cat > "$WORK/Dockerfile" <<EOF
FROM alertfilter-runner:$TAG-base
COPY schemas/ /opt/alertfilter/schemas/
COPY alerts/ /opt/alertfilter/alerts/
EOF
  docker build -f "$WORK/Dockerfile" -t "alertfilter-runner:$TAG" "$WORK"
  docker run --rm "alertfilter-runner:$TAG" --help >/dev/null
  docker run --rm --entrypoint python "alertfilter-operator:$TAG" -c "import alertfilter.api, alertfilter_operator.handlers"
}

step_load() {
  say "loading the images into kind"
  CLUSTER=$CLUSTER bash hack/kind-cluster.sh load "alertfilter-operator:$TAG" "alertfilter-runner:$TAG"
}

step_strimzi() {
  local version   # the version the chart declares as its dependency
  version=$("$PY" -c 'import sys, yaml; print(next(d["version"] for d in yaml.safe_load(open(sys.argv[1]))["dependencies"]
                                                   if d["name"] == "strimzi-kafka-operator"))' "$CHART/Chart.yaml")
  say "Strimzi $version from its OCI chart, watching every namespace"
  "$HELM" upgrade --install strimzi oci://quay.io/strimzi-helm/strimzi-kafka-operator --version "$version" \
    --kube-context "kind-$CLUSTER" --namespace strimzi --create-namespace --set watchAnyNamespace=true \
    --wait --timeout 10m
}

step_install() {
  say "the chart (Strimzi is installed already: strimzi.enabled=false); ci/kind-values.yaml"
  # Helm installs nothing whose declared dependencies are missing from charts/, enabled or not.
  HELM=$HELM bash hack/chart-deps.sh >/dev/null
  "$HELM" upgrade --install "$RELEASE" "$CHART" --kube-context "kind-$CLUSTER" --namespace "$KAFKA_NS" --create-namespace \
    -f "$CHART/ci/kind-values.yaml" --wait --timeout 5m
  k -n "$KAFKA_NS" rollout status "deployment/$RELEASE-alert-filter-operator" --timeout 180s
  say "waiting for the central Kafka and the full-stream topic"
  k -n "$KAFKA_NS" wait kafka/central --for=condition=Ready --timeout "$WAIT"
  k -n "$KAFKA_NS" wait kafkatopic/alerts --for=condition=Ready --timeout 300s
}

step_filters() {
  say "the example FilterPool, sized for kind: one ephemeral broker"
  kind_filterpool | k apply -f -
  k wait filterpool/pool-a --for=condition=Ready --timeout "$WAIT"
  k create namespace "$FILTERS_NS" --dry-run=client -o yaml | k apply -f -
  say "a filter whose source does not compile is rejected by the webhook, with its line"
  if out=$(k -n "$FILTERS_NS" apply -f examples/alertfilter-broken-syntax.yaml 2>&1); then
    die "the broken AlertFilter was accepted: $out"
  fi
  echo "$out" | grep -q "line [0-9]" || die "rejected without a line number: $out"
  echo "$out" >&2
  say "the example AlertFilters"
  k -n "$FILTERS_NS" apply -f "$WORK/manifests/"
  k -n "$FILTERS_NS" wait alertfilter --all --for=condition=Ready --timeout "$WAIT"
  k -n "$FILTERS_NS" get alertfilters
  say "a reader of the pool's topics for the checks"
  reader_user | k apply -f -
  k -n "$KAFKA_NS" wait kafkauser/e2e-reader --for=condition=Ready --timeout 300s
}

# The manifests the steps apply besides the examples (`manifests` prints them all, for a dry run).
kind_filterpool() {
  "$PY" - "$KAFKA_NS" <<'PY'
import json, sys
import yaml
pool = yaml.safe_load(open("examples/filterpool.yaml"))
pool["spec"]["kafka"].update(namespace=sys.argv[1], replicas=1, storage={"type": "ephemeral"})
pool["spec"]["mirror"]["sourceBootstrapServers"] = f"central-kafka-bootstrap.{sys.argv[1]}.svc:9092"
print(json.dumps(pool))
PY
}

reader_user() {
  cat <<EOF
apiVersion: kafka.strimzi.io/v1
kind: KafkaUser
metadata:
  name: e2e-reader
  namespace: $KAFKA_NS
  labels:
    strimzi.io/cluster: pool-a-kafka
spec:
  authentication:
    type: scram-sha-512
  authorization:
    type: simple
    acls:
      - resource: {type: topic, name: "*", patternType: literal}
        operations: [Read, Describe]
      - resource: {type: group, name: alertfilter-consume-, patternType: prefix}
        operations: [Read]
EOF
}

pod_manifest() {  # name, shell command
  local name=$1 cmd=$2
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  labels: {app.kubernetes.io/part-of: alert-filter-e2e}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  nodeSelector: {alerts.lsst.io/role: consumers}
  securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: main
      image: alertfilter-runner:$TAG
      imagePullPolicy: IfNotPresent
      command: ["sh", "-c", $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$cmd")]
      env:
        - name: READER_PASSWORD
          valueFrom: {secretKeyRef: {name: e2e-reader, key: password, optional: true}}
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
}

step_manifests() {
  [ -f "$WORK/mode" ] || die "run the data step first"
  kind_filterpool; echo "---"
  reader_user; echo "---"
  pod_manifest e2e-producer "alertfilter --help"
  for f in "$WORK"/manifests/*.yaml; do echo "---"; cat "$f"; done
}

# Run one command in a pod of the runner image on the consumers' node; print its output.
run_pod() {
  local name=$1 cmd=$2 phase="" i
  k -n "$KAFKA_NS" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  pod_manifest "$name" "$cmd" | k -n "$KAFKA_NS" apply -f - >/dev/null
  for i in $(seq 1 180); do
    phase=$(k -n "$KAFKA_NS" get pod "$name" -o jsonpath='{.status.phase}')
    case "$phase" in Succeeded|Failed) break ;; esac
    sleep 2
  done
  k -n "$KAFKA_NS" logs "$name"
  [ "$phase" = Succeeded ] || die "pod $name ended $phase after $((i * 2)) s"
}

step_produce() {
  local extra=""
  [ "$(cat "$WORK/mode")" = simulated ] && extra="--schema-id $SIM_SCHEMA_ID --visit-field diaSource.ccdVisitId --id-field alertId"
  say "producing the alerts to the central Kafka's topic alerts, visit by visit"
  run_pod e2e-producer "alertfilter produce --bootstrap-servers central-kafka-bootstrap.$KAFKA_NS.svc:9092 --topic alerts \
    --cadence 0.05 $extra /opt/alertfilter/alerts/*.avro"
}

count() {  # bootstrap topic
  run_pod "e2e-count" "alertfilter consume --bootstrap-servers $1 --topic $2 --mode count \
    -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=e2e-reader \
    -X sasl.password=\"\$READER_PASSWORD\"" | tail -1
}

step_verify() {
  local deadline=$((SECONDS + ${VERIFY_SECONDS:-600})) failed name want_out want_dlq bs out dlq got_out got_dlq
  say "counting every filter's output and dead-letter topics (until they match the backtest)"
  cat "$WORK/expected.json" >&2
  while :; do
    failed=0
    for name in $("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))))' "$WORK/expected.json"); do
      want_out=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["output"])' "$WORK/expected.json" "$name")
      want_dlq=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["deadletter"])' "$WORK/expected.json" "$name")
      bs=$(k -n "$FILTERS_NS" get alertfilter "$name" -o jsonpath='{.status.bootstrapServers}')
      out=$(k -n "$FILTERS_NS" get alertfilter "$name" -o jsonpath='{.status.outputTopic}')
      dlq=$(k -n "$FILTERS_NS" get alertfilter "$name" -o jsonpath='{.status.deadLetterTopic}')
      got_out=$(count "$bs" "$out")
      got_dlq=$(count "$bs" "$dlq")
      printf '%-24s output %s: %s (backtest %s)   dead letters %s: %s (backtest %s)\n' \
        "$name" "$out" "$got_out" "$want_out" "$dlq" "$got_dlq" "$want_dlq" >&2
      if [ "$got_out" != "$want_out" ] || [ "$got_dlq" != "$want_dlq" ]; then failed=1; fi
    done
    [ "$failed" = 0 ] && { say "every count matches the backtest"; return 0; }
    [ "$SECONDS" -lt "$deadline" ] || die "counts differ from the backtest"
    sleep 20
  done
}

step_diagnostics() {
  set +e
  k get nodes -o wide
  k get pods -A -o wide
  k get filterpools,alertfilters -A -o wide
  k -n "$KAFKA_NS" get kafka,kafkanodepool,kafkatopic,kafkauser,kafkamirrormaker2 -o wide
  k describe filterpools
  k -n "$FILTERS_NS" describe alertfilters
  k -n "$KAFKA_NS" logs "deployment/$RELEASE-alert-filter-operator" --tail 300
  k -n "$FILTERS_NS" logs -l app.kubernetes.io/component=filter-runner --all-containers --tail 100 --prefix
  k get events -A --sort-by=.lastTimestamp | tail -100
}

step_delete() {
  CLUSTER=$CLUSTER bash hack/kind-cluster.sh down
}

[ $# -gt 0 ] || { sed -n '2,21p' "$0" >&2; exit 2; }
for s in "$@"; do
  case "$s" in
    all) for t in cluster data images load strimzi install filters produce verify; do "step_$t"; done ;;
    cluster|data|images|load|strimzi|install|filters|produce|verify|diagnostics|delete|manifests) "step_$s" ;;
    *) die "unknown step $s" ;;
  esac
done
