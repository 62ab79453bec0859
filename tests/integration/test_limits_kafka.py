"""spec.limits on a real Kafka broker: each guard trips at its figure, the alerts past it are
counted and their offsets committed (the consumer group goes on to the end of the input), /metrics
shows the trip, a restarted runner keeps it, and a new UTC day (or the next window) resets it.

The runner is ``alertfilter run``, in this process so that its limits' clock can be the test's
(``--max-accepted-per-day`` etc. come through the command line as in a pod; only the clock that says
which UTC day it is is injected): a day passes without sleeping a day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from prometheus_client.parser import text_string_to_metric_families

import alertfilter.runner
from alertfilter.cli import commands, main
from alertfilter.kafkautil import ensure_topics
from alertfilter.limits import LimitGuard, Limits
from alertfilter.offsets import decode_limits_metadata

from .streams import committed, produce_values, read_topic

START = dt.datetime(2026, 12, 3, 12, 3, 11, tzinfo=dt.UTC).timestamp()
ACCEPT_ALL = "def f(alert):\n    return True\n"


class Clock:
    """The limits' clock, Unix s; the test moves it."""

    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> float:
        return self.t


class Stream:
    """A topic of simulated alerts (Confluent wire format, schema id 1 in ``schemas``)."""

    def __init__(self, bootstrap: str, topic: str, tmp_path: Path) -> None:
        from alertfilter.simulate import alert_schema

        self.bootstrap, self.topic = bootstrap, topic
        self.schema_dir = tmp_path / "schemas"
        self.schema_dir.mkdir(exist_ok=True)
        schema = alert_schema()
        (self.schema_dir / "1.avsc").write_text(json.dumps(schema))
        self.parsed = fastavro.parse_schema(schema)
        self.sent = 0
        ensure_topics(bootstrap, {topic: 1})  # the runner waits for its input topic

    def values(self, n: int) -> list[bytes]:
        from alertfilter.codecs import encode_confluent
        from alertfilter.simulate import simulate

        visit = 1000 + self.sent
        alerts = list(simulate([visit], n, history=1, cutout_bytes=100, seed=self.sent))[:n]
        return [encode_confluent(a, self.parsed, 1) for a in alerts]

    def produce(self, values: list[bytes]) -> None:
        produce_values(self.bootstrap, self.topic, values)
        self.sent += len(values)


def scrape(port: int) -> dict[str, float]:
    """``name{label="value"}`` -> value of the runner's limit series."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if "limit" in s.name:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


def until(what: Callable[[], Any], timeout: float = 90.0, message: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out: {message}")


@contextlib.contextmanager
def running(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, stream: Stream, out: str, group: str, flt: Path, *limits: str
) -> Iterator[tuple[alertfilter.runner.Runner, int]]:
    """``alertfilter run`` with ``limits`` options, its limits on ``clock``; yields the runner and its metrics port."""
    from alertfilter_devstack.procs import free_port

    made: list[alertfilter.runner.Runner] = []

    class Seen(alertfilter.runner.Runner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(alertfilter.runner, "Runner", Seen)
    monkeypatch.setattr(commands, "LimitGuard", lambda limits: LimitGuard(limits, clock))
    port = free_port()
    args = ["run", "--bootstrap-servers", stream.bootstrap, "--input", stream.topic, "--output", out]
    args += ["--filter", str(flt), "--schema-dir", str(stream.schema_dir), "--group", group, "--create-topics"]
    args += ["--no-visit-cap", "--visit-field", "diaSource.ccdVisitId", "--id-field", "alertId"]
    args += ["--metrics-port", str(port), "--topic-wait", "30", *limits]
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["rc"] = main(args)
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run, name="runner", daemon=True)
    thread.start()
    runner = until(lambda: made[0] if made and made[0].ready() else None or result.get("error"), message="assignment")
    assert isinstance(runner, alertfilter.runner.Runner), result
    try:
        yield runner, port
    finally:
        runner.stop()
        thread.join(60)
        assert result.get("rc") == 0, result


def settle(runner: alertfilter.runner.Runner, stream: Stream, group: str, consumed: int, accepted: int) -> None:
    """Wait until the runner consumed ``consumed`` alerts and had ``accepted`` acknowledged, and the
    group's committed offset is at the end of the input."""
    until(lambda: runner.totals["consumed"] >= consumed, message=f"consumed {consumed}: {runner.totals}")
    until(lambda: runner.totals["accepted"] >= accepted, message=f"accepted {accepted}: {runner.totals}")
    until(lambda: committed(stream.bootstrap, stream.topic, group)[0][0] == stream.sent, message="committed")
    assert runner.totals["accepted"] == accepted and runner.totals["consumed"] == consumed


def filter_file(tmp_path: Path) -> Path:
    p = tmp_path / "f.py"
    p.write_text(ACCEPT_ALL)
    return p


ACC = '{limit="maxAcceptedPerDay"}'
BYTES = '{limit="maxBytesPerDay"}'
RATE = '{limit="maxMatchRate"}'


@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_max_accepted_per_day_trips_survives_a_restart_and_resets_at_utc_midnight(
    kafka, tmp_path, topic_prefix, monkeypatch, delivery
):
    clock, stream = Clock(), Stream(kafka.bootstrap, f"{topic_prefix}-alerts", tmp_path)
    out, group, flt = f"{topic_prefix}-out", f"{topic_prefix}-g", filter_file(tmp_path)
    limit = ("--max-accepted-per-day", "5", *(["--exactly-once"] if delivery == "exactly-once" else []))
    with running(monkeypatch, clock, stream, out, group, flt, *limit) as (runner, port):
        stream.produce(stream.values(12))
        settle(runner, stream, group, consumed=12, accepted=5)
        assert runner.totals["limited"] == 7
        m = scrape(port)
        assert m["alertfilter_limited" + ACC] == 1 and m["alertfilter_limit_trips_total" + ACC] == 1
        assert m["alertfilter_alerts_limited_total{}"] == 7
        assert m["alertfilter_limit_tripped_timestamp_seconds" + ACC] == int(START)
        assert m["alertfilter_limited" + RATE] == 0
    assert len(read_topic(kafka.bootstrap, out)) == 5
    meta = decode_limits_metadata(committed(kafka.bootstrap, stream.topic, group)[0][1])
    assert meta is not None and meta["accepted"] == 5 and "maxAcceptedPerDay" in meta["tripped"]

    with running(monkeypatch, clock, stream, out, group, flt, *limit) as (runner, port):  # a restart, same day
        assert scrape(port)["alertfilter_limited" + ACC] == 1  # known from the committed offsets
        stream.produce(stream.values(3))
        settle(runner, stream, group, consumed=3, accepted=0)
        assert runner.totals["limited"] == 3
        clock.t += 86_400  # the next UTC day
        assert scrape(port)["alertfilter_limited" + ACC] == 0  # reset before any new alert
        stream.produce(stream.values(8))
        settle(runner, stream, group, consumed=11, accepted=5)
        m = scrape(port)
        assert m["alertfilter_limited" + ACC] == 1 and m["alertfilter_limit_trips_total" + ACC] == 1
    assert len(read_topic(kafka.bootstrap, out)) == 10


@pytest.mark.slow
def test_max_bytes_per_day_never_forwards_more_bytes_and_resets_at_utc_midnight(
    kafka, tmp_path, topic_prefix, monkeypatch
):
    clock, stream = Clock(), Stream(kafka.bootstrap, f"{topic_prefix}-alerts", tmp_path)
    out, group, flt = f"{topic_prefix}-out", f"{topic_prefix}-g", filter_file(tmp_path)
    first = stream.values(10)
    budget = sum(len(v) for v in first[:3]) + len(first[3]) - 1  # three fit, the fourth would pass it
    with running(monkeypatch, clock, stream, out, group, flt, "--max-bytes-per-day", str(budget)) as (runner, port):
        stream.produce(first)
        settle(runner, stream, group, consumed=10, accepted=3)
        m = scrape(port)
        assert m["alertfilter_limited" + BYTES] == 1 and m["alertfilter_limit_trips_total" + BYTES] == 1
        assert m["alertfilter_alerts_limited_total{}"] == 7
        clock.t += 86_400
        assert scrape(port)["alertfilter_limited" + BYTES] == 0
        stream.produce(first)  # the same alerts again: the same three fit
        settle(runner, stream, group, consumed=20, accepted=6)
        assert scrape(port)["alertfilter_limit_trips_total" + BYTES] == 2
    got = read_topic(kafka.bootstrap, out)
    assert [r.value for r in got] == first[:3] * 2
    assert sum(len(r.value or b"") for r in got[:3]) <= budget


@pytest.mark.slow
def test_max_match_rate_stops_forwarding_for_the_rest_of_the_window_and_the_next_window_resumes(
    kafka, tmp_path, topic_prefix, monkeypatch
):
    clock, stream = Clock(), Stream(kafka.bootstrap, f"{topic_prefix}-alerts", tmp_path)
    out, group, flt = f"{topic_prefix}-out", f"{topic_prefix}-g", filter_file(tmp_path)
    with running(monkeypatch, clock, stream, out, group, flt, "--max-match-rate", "0.01") as (runner, port):
        stream.produce(stream.values(1500))  # the first window of 1000, and half the second
        settle(runner, stream, group, consumed=1500, accepted=20)  # 10 of each window
        m = scrape(port)
        assert m["alertfilter_limited" + RATE] == 1 and m["alertfilter_limit_trips_total" + RATE] == 2
        assert m["alertfilter_alerts_limited_total{}"] == 1480
        stream.produce(stream.values(500))  # the second window's end
        settle(runner, stream, group, consumed=2000, accepted=20)
        assert scrape(port)["alertfilter_limited" + RATE] == 0
        stream.produce(stream.values(20))  # a third window
        settle(runner, stream, group, consumed=2020, accepted=30)
        doc = runner.status.document(clock.t)["values"]["limits"]["maxMatchRate"]
        assert doc["limited"] is True and doc["window"] == 1000 and doc["value"] == 0.01
    assert len(read_topic(kafka.bootstrap, out)) == 30
    assert Limits(max_match_rate=0.01).match_window == 1000
