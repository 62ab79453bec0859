"""What the operator renders for a runner pod is what the runner accepts: the environment the
operator's builder writes, read back by ``alertfilter run``'s own parsing and checks, gives the
settings the AlertFilter asked for, and never a configuration error at start."""

from __future__ import annotations

from typing import Any

import pytest

from alertfilter.cli import build_parser, resolve_run_args
from alertfilter.cli.args import kafka_env
from alertfilter.cli.commands import runner_settings, visit_cap
from alertfilter.settings import hard_timeout
from alertfilter_operator.builders import FilterRef, PoolInfo, runner_env
from alertfilter_operator.models import AlertFilterSpec, FilterPoolSpec

POOL = FilterPoolSpec.model_validate(
    {
        "nodeSelector": {"alerts.lsst.io/pool": "pool-a"},
        "capacity": {"nodes": 1, "filtersPerNode": 50},
        "kafka": {"namespace": "kafka-a", "replicas": 1},
        "mirror": {"sourceBootstrapServers": "central:9092", "topic": "alerts"},
    }
)
SOURCE = "def bright(alert):\n    return alert['diaSource']['snr'] > 5\n"


def rendered_args(monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any], **kw: Any) -> Any:
    """The ``run`` arguments a pod with the operator's environment for ``spec`` resolves to."""
    ref = FilterRef("science", "bright", "uid-1", AlertFilterSpec.model_validate({"source": SOURCE, **spec}), "ab")
    for name in [n for n in __import__("os").environ if n.startswith("ALERTFILTER_")]:
        monkeypatch.delenv(name)
    for item in runner_env(ref, PoolInfo.from_spec("pool-a", POOL), **kw):
        value = item.get("value", "from-a-secret")  # valueFrom: the kubelet fills it in
        monkeypatch.setenv(item["name"], value)
    args = build_parser().parse_args(["run"])
    resolve_run_args(args)  # exits 2 on a value the runner refuses
    return args


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"maxAlertsPerVisit": 0, "entrypoint": "bright", "exactlyOnce": True, "filterTimeoutSeconds": 2.5},
        {"filterTimeoutSeconds": 60, "visitField": "diaSource.ccdVisitId", "idField": "alertId"},
        {"filterTimeoutSeconds": 0.01, "maxAlertsPerVisit": 1_000_000, "output": {"maxMessageBytes": 1024 * 1024}},
    ],
)
def test_the_runner_accepts_what_the_operator_renders(monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]) -> None:
    args = rendered_args(monkeypatch, spec, schema_registry="http://registry:8081")
    model = AlertFilterSpec.model_validate({"source": SOURCE, **spec})
    settings = runner_settings(args, "bright", hard_timeout(args.filter_timeout, None), kafka_env())
    settings.validate(args.filter_timeout)  # the runner's start-up check: raises on what it would refuse
    assert args.filter == "/etc/alertfilter/filter.py" and args.filter_timeout == model.filterTimeoutSeconds
    assert (args.visit_field, args.id_field) == (model.visitField, model.idField)
    assert visit_cap(args) == (model.maxAlertsPerVisit or None)
    assert (args.entrypoint, args.exactly_once) == (model.entrypoint, model.exactlyOnce)
    assert settings.max_message_bytes == model.output.maxMessageBytes
    assert (settings.input_topic, settings.output_topic) == ("alerts", "science.bright")
    assert settings.group_id == "alertfilter.science.bright.uid-1" and args.schema_registry == "http://registry:8081"
    assert kafka_env()["sasl.username"] == "af.science.bright" and settings.metrics_port == 8080


def test_a_slow_budget_gets_a_batch_that_fits_the_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    args = rendered_args(monkeypatch, {"filterTimeoutSeconds": 60})
    assert args.batch_size == 4  # 4 calls of 60 s, plus 30 s, stay under max.poll.interval.ms (300 s)
    assert rendered_args(monkeypatch, {}).batch_size == 200  # the default is not rendered at all


def _extremes() -> list[dict[str, Any]]:
    """One spec per numeric field of the AlertFilter schema at each end of its admitted range (the
    CRD is generated from the same model), plus every flag set: issue #12 asks that every spec
    the CRD admits runs."""
    schema = AlertFilterSpec.model_json_schema()
    out: list[dict[str, Any]] = []

    def walk(props: dict[str, Any], path: list[str]) -> None:
        for name, prop in props.items():
            prop = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
            if "$ref" in prop:
                walk(schema["$defs"][prop["$ref"].split("/")[-1]].get("properties", {}), [*path, name])
                continue
            ends: list[Any] = []
            if prop.get("type") in ("integer", "number"):
                low = prop.get("minimum", prop.get("exclusiveMinimum", 0) + 0.001)
                ends = [low, prop.get("maximum", prop.get("exclusiveMaximum"))]
            elif prop.get("type") == "boolean":
                ends = [True]
            for value in [e for e in ends if e is not None]:
                spec: dict[str, Any] = {}
                node = spec
                for part in path:
                    node = node.setdefault(part, {})
                node[name] = value
                out.append(spec)

    walk(schema["properties"], [])
    return out


@pytest.mark.parametrize("spec", _extremes(), ids=lambda s: str(s))
def test_every_field_at_either_end_of_its_range_renders_a_runner_that_starts(
    monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]
) -> None:
    args = rendered_args(monkeypatch, spec, schema_registry="http://registry:8081")
    settings = runner_settings(args, "bright", hard_timeout(args.filter_timeout, None), kafka_env())
    settings.validate(args.filter_timeout)
