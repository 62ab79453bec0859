"""The chart's alert rules and dashboard queries, checked by the real ``promtool`` (built from
Prometheus's Go module by hack/build-promtool.sh) against metrics scraped from a running runner.

The runner filters real alerts (some accepted, some capped, some in error) on a real broker; its
``/metrics`` is scraped before and after, and the samples become promtool's input series with the
labels the chart's PodMonitor gives them (job, namespace, pod, filter, pool). Every dashboard query
must return data on them; the rules must pass ``promtool check rules``, stay quiet on this healthy
runner, and fire on series made to break each one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.streams import RunnerProcess, encode_files, produce_values

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "alert-filter-operator"
TARGET = {"job": "alertfilter-runner", "namespace": "science", "pod": "af-bright-5d8f-x2x", "filter": "bright"}
TARGET |= {"pool": "pool-a", "instance": "10.244.1.7:8080"}
#: What Grafana substitutes in the dashboard's queries, as a user who picked "All" sees it.
GRAFANA_VARS = {"$namespace": ".*", "$pool": ".*", "$filter": ".*", "$__rate_interval": "5m"}
FILTER = """
def f(alert):
    src = alert["diaSource"]
    if src["detector"] % 7 == 0:
        raise ValueError("a filter bug on some alerts")
    return src["snr"] > 5
"""


def tool(script: str, name: str) -> str:
    """The path a hack/ build script prints (it builds once, then answers at once)."""
    r = subprocess.run(["bash", str(ROOT / "hack" / script)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"{name} is not available (hack/{script}): {r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def promtool() -> str:
    return tool("build-promtool.sh", "promtool")


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    """The chart's PrometheusRule spec, rendered by helm with the defaults."""
    helm = tool("build-helm.sh", "helm")
    r = subprocess.run(
        [helm, "template", "t", str(CHART), "--set", "monitoring.prometheusRule.enabled=true"],
        capture_output=True,
        text=True,
        check=True,
    )
    (rule,) = [d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def scrape(port: int) -> str:
    body: bytes = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    return body.decode()


@pytest.fixture(scope="module")
def scrapes(kafka, alerts_dir, tmp_path_factory) -> tuple[str, str]:
    """``/metrics`` of a runner before and after it filtered 20 real alerts and 3 undecodable values."""
    from alertfilter_devstack.procs import free_port

    tmp = tmp_path_factory.mktemp("mon")
    _, values = encode_files([alerts_dir / "rubin-v10_0-real-20.avro"], tmp / "schemas")
    inp, out = f"mon-{time.time_ns()}", f"mon-out-{time.time_ns()}"
    produce_values(kafka.bootstrap, inp, [])
    (tmp / "f.py").write_text(FILTER)
    port = free_port()
    r = RunnerProcess(kafka.bootstrap, inp, out, tmp / "f.py", tmp / "schemas", tmp / "run.log")
    r.args[r.args.index("--metrics-port") + 1] = str(port)
    r.args += ["--max-alerts-per-visit", "1"]
    r.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        before = scrape(port)
        produce_values(kafka.bootstrap, inp, [*values, b"\x00\x00\x00\x03\xe8garbage", b"junk", b"\x01"])
        after = ""
        # every alert processed, and the lag reported (librdkafka's statistics come every 5 s)
        while time.monotonic() < deadline and not (
            "alertfilter_alerts_consumed_total 23.0" in after and "alertfilter_consumer_lag{" in after
        ):
            time.sleep(0.5)
            after = scrape(port)
        assert "alertfilter_alerts_consumed_total 23.0" in after, r.log()
        return before, after
    finally:
        r.kill()
        r.wait(30)


@pytest.fixture(scope="module")
def lean_scrape(kafka, alerts_dir, tmp_path_factory) -> str:
    """``/metrics`` of a real ``alertfilter lean`` after it copied 20 real alerts and 2 values it
    cannot splice (forwarded whole) to its lean topic."""
    from alertfilter_devstack.procs import free_port

    tmp = tmp_path_factory.mktemp("lean")
    _, values = encode_files([alerts_dir / "rubin-v10_0-real-20.avro"], tmp / "schemas")
    inp = f"mon-lean-{time.time_ns()}"
    produce_values(kafka.bootstrap, inp, [*values, b"junk", b"\x00\x00\x00\x03\xe8garbage"])
    port = free_port()
    cmd = [sys.executable, "-m", "alertfilter", "lean", "--bootstrap-servers", kafka.bootstrap, "--input", inp]
    cmd += ["--create-topics", "--metrics-port", str(port), "--schema-dir", str(tmp / "schemas")]
    with open(tmp / "lean.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, text = time.monotonic() + 90, ""
        while time.monotonic() < deadline and not (
            "alertfilter_lean_alerts_out_total 22.0" in text and "alertfilter_lean_consumer_lag{" in text
        ):
            time.sleep(0.5)
            try:
                text = scrape(port)
            except OSError:
                continue
        assert "alertfilter_lean_alerts_out_total 22.0" in text, (tmp / "lean.log").read_text()[-3000:]
        return text
    finally:
        proc.kill()
        proc.wait(30)


def series(text: str, target: dict[str, str] = TARGET) -> dict[str, float]:
    """``{'name{labels}': value}`` of an exposition, with the PodMonitor's target labels added."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            labels = {**s.labels, **target}
            body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out[f"{s.name}{{{body}}}"] = s.value
    return out


#: A lean producer pod's target labels (the PodMonitor names the job after app.kubernetes.io/name).
LEAN_TARGET = {"job": "alertfilter-lean", "namespace": "kafka-pool-a", "pod": "pool-a-lean-7c9-q2w", "pool": "pool-a"}
LEAN_TARGET |= {"instance": "10.244.1.9:8080"}
#: MirrorMaker 2's series, named and labelled as the operator's JMX exporter rules
#: (builders/mirror_metrics.py; Strimzi's example names, Kafka 4's source label) expose them, with the
#: mirror PodMonitor's pool label; Kafka Connect's own consumers of its storage topics must not count as lag.
MIRROR = {"job": "alertfilter-mirror", "namespace": "kafka-pool-a", "pool": "pool-a"}
MIRROR_SERIES = [
    (
        "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max",
        {"source": "central", "target": "pool-a-kafka", "partition": "0"},
        250,
    ),
    ("kafka_consumer_fetch_manager_records_lag", {"clientid": "consumer-null-1", "partition": "0"}, 12),
    # Kafka 4.1's consumer registers a dotted topic's partition metrics twice, '.' also as '_' (seen on
    # a real MirrorMaker 2 with the JMX exporter agent): the panel must count the partition once
    (
        "kafka_consumer_fetch_manager_records_lag",
        {"clientid": "consumer-null-1", "partition": "1", "topic": "rubin.alerts"},
        5,
    ),
    (
        "kafka_consumer_fetch_manager_records_lag",
        {"clientid": "consumer-null-1", "partition": "1", "topic": "rubin_alerts"},
        5,
    ),
    (
        "kafka_consumer_fetch_manager_records_lag",
        {"clientid": "pool-a-kafka-mirror-offsets", "topic": "pool-a-kafka-mirror-offsets"},
        1000,
    ),
]


def input_series(before: str, after: str, minutes: int = 30, lean: str = "") -> list[dict[str, str]]:
    """promtool input series, one sample a minute: ``before`` at 0, ``after`` (and ``lean``, a lean
    producer's exposition) from 1m on; ``up`` is 1; the mirror's series (no real MirrorMaker 2 here)."""
    b, a = series(before), series(after)
    out = [{"series": name, "values": f"{b.get(name, 0):g} {v:g}x{minutes}"} for name, v in a.items()]
    out += [{"series": name, "values": f"0 {v:g}x{minutes}"} for name, v in series(lean, LEAN_TARGET).items()]
    up = ",".join(f'{k}="{v}"' for k, v in sorted(TARGET.items()))
    out.append({"series": f"up{{{up}}}", "values": f"1x{minutes}"})
    for name, labels, value in MIRROR_SERIES:
        body = ",".join(
            f'{k}="{v}"' for k, v in sorted({**MIRROR, "topic": "alerts", "partition": "0", **labels}.items())
        )
        out.append({"series": f"{name}{{{body}}}", "values": f"{value}x{minutes}"})
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads((CHART / "dashboards" / "alertfilter.json").read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k, v in GRAFANA_VARS.items():
                expr = expr.replace(k, v)
            out.append((f"{p['title']} [{t['refId']}]", expr))
    for v in dash["templating"]["list"]:  # label_values(METRIC{...}, LABEL): Grafana's, as PromQL
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", v.get("definition", ""))
        if m:
            expr = m.group(1)
            for k, val in GRAFANA_VARS.items():
                expr = expr.replace(k, val)
            out.append((f"variable {v['name']}", f"count by ({m.group(2)}) ({expr})"))
    return out


def run_promtool(promtool: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=tmp, check=False)


def test_the_runners_metrics_pass_promtools_lint(promtool, scrapes, tmp_path):
    r = subprocess.run([promtool, "check", "metrics"], input=scrapes[1], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_lean_producers_metrics_pass_promtools_lint(promtool, lean_scrape):
    r = subprocess.run([promtool, "check", "metrics"], input=lean_scrape, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_dashboard_query_returns_data_on_the_runners_metrics(promtool, scrapes, lean_scrape, tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 24
    tests = [
        {
            "interval": "1m",
            "input_series": input_series(scrapes[0], scrapes[1], lean=lean_scrape),
            "promql_expr_test": [
                {"expr": f"count({expr}) > bool 0", "eval_time": "4m", "exp_samples": [{"labels": "{}", "value": 1}]}
                for _, expr in queries
            ],
        }
    ]
    (tmp_path / "empty.yaml").write_text("groups: []\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": ["empty.yaml"], "tests": tests}))
    r = run_promtool(promtool, tmp_path, "test", "rules", "t.yaml")
    if r.returncode != 0:  # name the panels whose query returned nothing
        said = (r.stdout + r.stderr).replace('\\"', '"')
        empty = [t for t, e in queries if f"count({e}) > bool 0" in said]
        pytest.fail(f"queries without data: {empty}\n{r.stdout[-4000:]}{r.stderr[-2000:]}")


def test_the_mirror_panels_read_the_source_connector_per_pool(promtool, tmp_path):
    mirror = {t: e for t, e in dashboard_queries() if t.startswith("Mirror")}
    assert len(mirror) == 2
    tests = [
        {
            "interval": "1m",
            "input_series": input_series("", "", 10)[1:],  # up and the mirror's series
            "promql_expr_test": [
                {"expr": e, "eval_time": "5m", "exp_samples": [{"labels": '{pool="pool-a"}', "value": v}]}
                for e, v in zip(mirror.values(), (250, 17), strict=True)  # not Connect's own consumer's 1000
            ],
        }
    ]
    (tmp_path / "empty.yaml").write_text("groups: []\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": ["empty.yaml"], "tests": tests}))
    r = run_promtool(promtool, tmp_path, "test", "rules", "t.yaml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_the_rules_pass_promtool_check(promtool, rules, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    r = run_promtool(promtool, tmp_path, "check", "rules", "rules.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 4 rules found" in r.stdout


def _labels(extra: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted({**TARGET, **extra}.items()))


def test_the_rules_are_quiet_on_a_healthy_runner_and_fire_on_each_fault(promtool, rules, scrapes, tmp_path):
    for g in rules["groups"]:  # annotations hold $value: compare the alerts by their labels
        for rule in g["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    healthy = {
        "interval": "1m",
        "input_series": input_series(*scrapes),
        "alert_rule_test": [{"eval_time": "25m", "alertname": n, "exp_alerts": []} for n in names],
    }
    who = {"namespace": "science", "pool": "pool-a", "filter": "bright", "severity": "warning"}
    faults = {
        "interval": "1m",
        "input_series": [
            {"series": f"up{{{_labels({})}}}", "values": "1 1 0x20"},
            {
                "series": f"alertfilter_consumer_lag{{{_labels({'topic': 'alerts', 'partition': '0'})}}}",
                "values": "0+200x40",
            },
            {"series": f"alertfilter_dead_letters_total{{{_labels({})}}}", "values": "0+180x40"},
            {"series": f"alertfilter_errors_total{{{_labels({'reason': 'filter-timeout'})}}}", "values": "0+6x40"},
            {"series": f"alertfilter_errors_total{{{_labels({'reason': 'filter-exception'})}}}", "values": "0+60x40"},
            # spec.limits: maxAcceptedPerDay stops forwarding from minute 4 on; the others never do
            {"series": f"alertfilter_limited{{{_labels({'limit': 'maxAcceptedPerDay'})}}}", "values": "0x3 1x36"},
            {"series": f"alertfilter_limited{{{_labels({'limit': 'maxMatchRate'})}}}", "values": "0x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "AlertFilterRunnerDown", "exp_alerts": []},  # down 3 min: not yet
            {
                "eval_time": "9m",
                "alertname": "AlertFilterRunnerDown",
                "exp_alerts": [{"exp_labels": {**who, "pod": TARGET["pod"]}}],
            },
            {"eval_time": "12m", "alertname": "AlertFilterLagGrowing", "exp_alerts": []},  # growing, not yet 10 min
            {"eval_time": "30m", "alertname": "AlertFilterLagGrowing", "exp_alerts": [{"exp_labels": who}]},
            {"eval_time": "15m", "alertname": "AlertFilterDeadLetters", "exp_alerts": [{"exp_labels": who}]},
            {
                "eval_time": "15m",
                "alertname": "AlertFilterTrippingLimits",
                "exp_alerts": [
                    {"exp_labels": {**who, "reason": "filter-timeout"}},
                    {"exp_labels": {**who, "reason": "maxAcceptedPerDay"}},
                ],
            },
        ],
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": [healthy, faults]}))
    r = run_promtool(promtool, tmp_path, "test", "rules", "t.yaml")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
