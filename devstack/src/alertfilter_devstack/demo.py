"""``make demo``: real alerts through the whole chain on the local stack.

Brings the stack up (``devstack up``), applies a FilterPool and the example AlertFilters with
``kubectl apply`` (the invalid one is rejected by the operator's webhook with its line and
column), produces the shared real Rubin alerts (replicated into 3,000, 300 per visit, one visit a
second) to the central Kafka, lets MirrorMaker 2 mirror them to the pool's Kafka and the
filter-runner pods filter them, then prints per filter: alerts seen, accepted, capped,
errors and the first accepted ids, and ``kubectl get alertfilters``. Every count is compared with
an independent run of the same filter over the same mirrored stream; a difference exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import hostkafka, stack
from .procs import repo_root

COPIES = 125  # 24 real alerts x 125 = 3,000 alerts
ALERTS_PER_VISIT = 300
CADENCE_S = 1.0
NS = stack.DEMO_NAMESPACE


@dataclass
class DemoFilter:
    name: str
    file: str
    manifest: str
    note: str = ""


FILTERS = [
    DemoFilter("bright-significant", "bright_significant.py", "alertfilter-bright-significant.yaml",
               "the original design's filter: S/N > 5 and brighter than magnitude 20"),
    DemoFilter("reliable-i-band", "reliable_i_band.py", "alertfilter-reliable-i-band.yaml",
               "a per-band filter; placed by the operator (no spec.pool)"),
    DemoFilter("known-objects", "known_objects.py", "alertfilter-known-objects.yaml",
               "raises TypeError on alerts without a diaObject: those go to known-objects' dead-letter topic"),
    DemoFilter("with-cutout", "with_cutout.py", "alertfilter-with-cutout.yaml",
               "reads cutoutDifference: runs on the full stream; the others read no cutout: the lean stream"),
]
LEAN_TOPIC = f"{stack.INPUT_TOPIC}.lean"  # the FilterPool's lean stream (spec.lean, default topic)
LEAN_DEPLOYMENT = "pool-a-kafka-lean"  # its producer (builders/lean.py: <pool kafka>-lean)
INVALID = "alertfilter-broken-syntax.yaml"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _metrics(cp, pod: str | None) -> dict[str, float]:
    """The ``alertfilter_*`` metrics of a runner pod, summed over labels, read through the API
    server's proxy (pod IPs are not routed to the host). Raises RuntimeError when unreachable."""
    if not pod:
        return {}
    text = cp.raw(f"/api/v1/namespaces/{NS}/pods/{pod}:8080/proxy/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("alertfilter_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            out[key] = out.get(key, 0.0) + float(value)
    return out


def main() -> int:
    from alertfilter import load_filter
    from alertfilter.cap import VisitCap
    from alertfilter.codecs import Decoder
    from alertfilter.processor import ACCEPTED, CAPPED, ERROR, AlertProcessor
    from alertfilter.schemas import DirectorySchemaSource
    from alertfilter.tools import consume, produce

    root = repo_root()
    data = Path(os.environ.get("ALERTFILTER_DATA", root.parent / "shared" / "data")) / "alerts"
    files = [data / "rubin-v10_0-real-20.avro", data / "rubin-v10_0-history-4.avro"]
    for f in files:
        if not f.is_file():
            say(f"demo: real alerts not found at {f}; set ALERTFILTER_DATA to the shared data folder")
            return 1
    t0 = time.monotonic()
    st = stack.up()
    cp = stack.control_plane()
    # the brokers' SASL SCRAM-SHA-512 listeners, as the host's super user (what `devstack env` exports)
    central, pool_bootstrap = st["kafka_central"]["sasl_bootstrap"], st["kafka_pool"]["sasl_bootstrap"]
    auth = hostkafka.admin_config(st)
    # Readers close their consumers quickly; one closed while its group coordinator's connection is
    # still authenticating logs "SASL authentication error ... Broker transport failure" (level 3)
    # though nothing failed. A real failure still shows: the counts would not match.
    readers = {**auth, "log_level": "2"}
    schema_dir = Path(st["schema_dir"])
    kubectl_cmd = f"kubectl --kubeconfig {st['kubeconfig']}"

    say("== kubectl apply: the FilterPool and the example AlertFilters")
    say("   " + cp.kubectl("apply", "-f", st["filterpool"]).stdout.strip())
    # the pool's lean producer keeps its pod when the runner image is rebuilt under the same tag:
    # restart it so that it runs the image just built (it commits on SIGTERM and resumes there)
    lean = f"deployment/{LEAN_DEPLOYMENT}"
    if cp.kubectl("get", lean, "-n", stack.KAFKA_NAMESPACE, check=False).returncode == 0:
        cp.kubectl("rollout", "restart", lean, "-n", stack.KAFKA_NAMESPACE)
        cp.kubectl("rollout", "status", lean, "-n", stack.KAFKA_NAMESPACE, "--timeout=180s", check=False)
    for f in FILTERS:
        # a fresh start: new consumer groups, which start at the stream's end (spec.startFrom: latest)
        cp.kubectl("delete", "alertfilter", f.name, "-n", NS, "--ignore-not-found", "--wait=true", "--timeout=60s",
                   check=False)
    # A filter created again is a new consumer group: it starts where the mirrored topic ends when it is
    # Ready (spec.startFrom: latest, the default), so it sees exactly the alerts this demo produces after
    # that. The alerts earlier demos and `make test` left there are dropped all the same, so that a
    # reader of the topic (or a filter with startFrom: earliest) finds only this demo's.
    _truncate(pool_bootstrap, stack.INPUT_TOPIC, auth)
    _truncate(pool_bootstrap, LEAN_TOPIC, auth)  # the lean copies of those alerts go too
    for f in FILTERS:
        say("   " + cp.kubectl("apply", "-n", NS, "-f", str(root / "examples" / f.manifest)).stdout.strip())
    r = cp.kubectl("apply", "-n", NS, "-f", str(root / "examples" / INVALID), check=False)
    say(f"   {INVALID}: {'rejected: ' + r.stderr.strip().split('denied the request: ')[-1] if r.returncode else 'accepted?!'}")

    say("== waiting for the filter-runner pods to be ready")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        out = json.loads(cp.kubectl("get", "alertfilters", "-n", NS, "-o", "json").stdout)["items"]
        ready = [a["metadata"]["name"] for a in out if any(c["type"] == "Ready" and c["status"] == "True"
                                                           for c in (a.get("status") or {}).get("conditions", []))]
        if all(f.name in ready for f in FILTERS):
            break
        time.sleep(1)
    else:
        say(cp.kubectl("get", "alertfilters,pods", "-n", NS, "-o", "wide").stdout)
        say(f"demo: the filters did not become ready; see {st['dir']}/*.log")
        return 1
    say("   " + ", ".join(f.name for f in FILTERS) + ": Ready")
    reads = {a["metadata"]["name"]: (a.get("status") or {}) for a in out}
    for f in FILTERS:
        st_f = reads.get(f.name, {})
        say(f"   {f.name} reads {st_f.get('inputTopic')} ({st_f.get('inputStream')})")

    say(f"== producing {24 * COPIES} real Rubin alerts to the central Kafka ({central}), topic '{stack.INPUT_TOPIC}': "
        f"{ALERTS_PER_VISIT} per visit, a visit every {CADENCE_S:g} s")
    start_offset = _end_offset(pool_bootstrap, stack.INPUT_TOPIC, readers)  # the mirrored topic's, where the runners start
    res = produce(central, stack.INPUT_TOPIC, files, copies=COPIES, alerts_per_visit=ALERTS_PER_VISIT,
                  cadence_s=CADENCE_S, first_visit=int(time.time()) * 100, write_schema_dir=schema_dir,
                  out=open(os.devnull, "w"), kafka_config=auth)
    say(f"   {res.alerts} alerts, {res.bytes / 1e6:.0f} MB in {res.visits} visits")

    say("== waiting for MirrorMaker 2 to mirror them and the runners to filter them")
    target = _end_offset(central, stack.INPUT_TOPIC, readers)
    pods = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        mirrored = _end_offset(pool_bootstrap, stack.INPUT_TOPIC, readers)
        done = 0
        for f in FILTERS:
            pods[f.name] = _runner_pod(cp, f.name)
            try:
                m = _metrics(cp, pods[f.name])
            except RuntimeError:
                m = {}
            done += int(m.get("alertfilter_alerts_consumed_total", 0) >= res.alerts)
        if mirrored >= target and done == len(FILTERS):
            break
        time.sleep(1)
    else:
        say(f"demo: not every alert was filtered in time (mirrored {mirrored}/{target}); logs in {st['dir']}")
        return 1

    say("== reading the output topics back from the pool's Kafka")
    dec = Decoder("confluent", DirectorySchemaSource(schema_dir), backend="cavro")
    stream = _values(pool_bootstrap, stack.INPUT_TOPIC, start_offset, readers)
    rows, failures = [], []
    for f in FILTERS:
        proc = AlertProcessor(load_filter((root / "examples" / "filters" / f.file).read_text()), dec, VisitCap(20),
                              filter_timeout_s=None)
        want = {"seen": 0, "accepted": 0, "capped": 0, "errors": 0}
        ids = []
        for v in stream:
            oc = proc.process(v)
            want["seen"] += 1
            if oc.kind == ACCEPTED:
                want["accepted"] += 1
                ids.append(oc.alert_id)
            elif oc.kind == CAPPED:
                want["capped"] += 1
            elif oc.kind == ERROR:
                want["errors"] += 1
        m = _metrics(cp, pods[f.name])
        topic = f"{NS}.{f.name}"
        out = consume(pool_bootstrap, topic, dec, "summary", 2.0, out=open(os.devnull, "w"), kafka_config=readers)
        dlq = consume(pool_bootstrap, f"{topic}.deadletter", None, "count", out=open(os.devnull, "w"),
                      kafka_config=readers)
        got = {"seen": int(m.get("alertfilter_alerts_consumed_total", -1)), "accepted": out.messages,
               "capped": int(m.get("alertfilter_alerts_capped_total", -1)), "errors": dlq.messages}
        if got != want or out.ids != ids:
            failures.append(f"{f.name}: got {got}, expected {want}" + ("" if out.ids == ids else "; ids differ"))
        rows.append((f, got, out.ids[:3]))

    say()
    say(f"{'filter':<20} {'reads':<12} {'seen':>6} {'accepted':>9} {'capped':>7} {'errors':>7}  "
        "first accepted ids (renumbered copies)")
    for f, got, first in rows:
        topic = str(reads.get(f.name, {}).get("inputTopic"))
        say(f"{f.name:<20} {topic:<12} {got['seen']:>6} {got['accepted']:>9} {got['capped']:>7} {got['errors']:>7}  "
            + ", ".join(map(str, first)))
    say(f"{'broken-syntax':<20} rejected by the webhook at kubectl apply (line 6, column 17)")
    say()
    for f in FILTERS:
        say(f"  {f.name}: {f.note}")
    say(f"  reads: {LEAN_TOPIC} is the pool's lean stream (cutouts null, made by its alertfilter lean pod); an "
        "accepted alert is still forwarded whole, read back from the full stream")
    say("  ids: the 24 real alerts are sent 125 times; each copy gets a new sequential diaSourceId "
        "(and each 300-alert group a new visit id) so that every alert stays distinct")
    say()
    say(cp.kubectl("get", "alertfilters", "-n", NS).stdout.rstrip())
    say()
    say(f"finished in {time.monotonic() - t0:.0f} s")
    if failures:
        say("MISMATCH between the topics and what the filters must give:")
        for line in failures:
            say("  " + line)
        return 1
    say("every count and every accepted id matches an independent run of the same filters over the mirrored stream.")
    say()
    say("Go on from here:")
    say("  eval \"$(.venv/bin/devstack env)\"            # KUBECONFIG, kubectl, bootstrap addresses, credentials")
    say(f"  kubectl get alertfilters,pods -n {NS} -o wide # or: {kubectl_cmd} ...")
    say(f"  kubectl logs -n {NS} deployment/af-bright-significant   # a runner's log")
    say(f"  .venv/bin/alertfilter consume --bootstrap-servers $POOL_BOOTSTRAP $KAFKA_AUTH_ARGS "
        f"--topic {NS}.bright-significant --schema-dir {schema_dir}")
    say("  .venv/bin/devstack down                       # the stack keeps running until you stop it "
        "(--cluster also deletes the kind cluster, --purge the data)")
    return 0


def _truncate(bootstrap: str, topic: str, auth: dict[str, str]) -> None:
    """Delete every record of ``topic`` up to its end (Kafka's deleteRecords: its log start moves there)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, **auth})
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        return  # not mirrored yet: nothing to drop
    ends = [TopicPartition(topic, p, _end_offset_of(bootstrap, topic, p, auth)) for p in md.partitions]
    for fut in admin.delete_records([tp for tp in ends if tp.offset > 0]).values():
        fut.result(timeout=30)


def _end_offset_of(bootstrap: str, topic: str, partition: int, auth: dict[str, str]) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "demo-probe", "log_level": 3, **auth})  # auth may lower it
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        c.close()


def _end_offset(bootstrap: str, topic: str, auth: dict[str, str]) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "demo-probe", "log_level": 3, **auth})  # auth may lower it
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    finally:
        c.close()


def _runner_pod(cp, name: str) -> str | None:
    """The name of a running, ready runner pod of filter ``name``, or None."""
    pods = json.loads(cp.kubectl("get", "pods", "-n", NS, "-l", f"alerts.lsst.io/filter={name}", "-o", "json").stdout)["items"]
    for p in pods:
        st = p.get("status") or {}
        if st.get("phase") == "Running" and not p["metadata"].get("deletionTimestamp") and all(
                c.get("ready") for c in st.get("containerStatuses") or [{}]):
            return str(p["metadata"]["name"])
    return None


def _values(bootstrap: str, topic: str, start: int, auth: dict[str, str]) -> list[bytes]:
    """Values of a one-partition topic from offset ``start`` to its end."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{time.time_ns()}", "enable.partition.eof": True,
                  "log_level": 3, **auth})
    c.assign([TopicPartition(topic, 0, start)])
    out: list[bytes] = []
    while True:
        msgs = c.consume(500, 2.0)
        if any(m.error() and m.error().code() == KafkaError._PARTITION_EOF for m in msgs):
            out += [m.value() for m in msgs if not m.error()]
            break
        out += [m.value() for m in msgs if not m.error()]
        if not msgs:
            break
    c.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
