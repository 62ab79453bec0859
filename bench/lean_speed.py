"""How fast the lean stream is made (issue #14): the splice in memory, and ``alertfilter lean``
through a real broker, on the shared real alerts. Prints a Markdown section for bench/RESULTS.md.

    .venv/bin/python bench/lean_speed.py [--alerts 6000]

In memory: each alert of both shared Rubin files (Confluent-framed) spliced again and again for a
few seconds (:class:`alertfilter.lean.Splicer`); alerts/s and MB/s of input. Through Kafka: a
one-partition topic of ``--alerts`` real alerts (both files mixed, as the density benchmark mixes
them) on a local KRaft broker, copied by ``alertfilter lean`` as a process (the pool's pod runs the
same command); the rate is alerts over the time from the producer's first copied alert to its last
acknowledged one (its log's start and its totals line), so the start-up and the idle exit do not count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def in_memory(files: list[Path], seconds: float = 3.0) -> list[tuple[str, float, float, float]]:
    import fastavro

    from alertfilter.codecs import encode_confluent, read_container
    from alertfilter.lean import Splicer, splice_confluent

    rows = []
    for f in files:
        schema, records = read_container(str(f))
        parsed = fastavro.parse_schema(schema)
        values = [encode_confluent(r, parsed, 1000) for r in records]
        splicer = Splicer(schema)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for v in values:
                splice_confluent(v, lambda _: splicer)
            n += len(values)
        dt = time.perf_counter() - t0
        mean = sum(map(len, values)) / len(values)
        lean = sum(len(splice_confluent(v, lambda _: splicer)) for v in values) / len(values)
        rows.append((f.name, n / dt, n * mean / dt / 1e6, lean))
    return rows


def through_kafka(files: list[Path], alerts: int) -> dict[str, float]:
    from confluent_kafka import Producer

    from alertfilter.kafkautil import ensure_topics
    from alertfilter_devstack.kafka import KafkaBroker
    from tests.integration.streams import encode_files

    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka")
        broker.start()
        try:
            _, values = encode_files(files, Path(tmp) / "schemas")
            ensure_topics(broker.bootstrap, {"alerts": 1, "alerts.lean": 1})
            p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 16 << 20, "linger.ms": 20})
            sent = 0
            for i in range(alerts):
                v = values[i % len(values)]
                sent += len(v)
                while True:
                    try:
                        p.produce("alerts", v)
                        break
                    except BufferError:
                        p.poll(0.2)
            assert p.flush(60) == 0
            log = Path(tmp) / "lean.log"
            port = _free_port()
            cmd = [sys.executable, "-m", "alertfilter", "lean", "--bootstrap-servers", broker.bootstrap,
                   "--input", "alerts", "--schema-dir", str(Path(tmp) / "schemas"), "--metrics-port", str(port),
                   "--exit-when-idle", "2"]  # fmt: skip
            env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTFILTER_")}
            t0 = time.monotonic()
            first = last = None
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
                while proc.poll() is None:  # the metrics, every 50 ms: from the first copied alert to the last
                    n = _scrape(port)
                    now = time.monotonic()
                    if n and first is None:
                        first = (now, n)
                    if n is not None and n >= alerts and last is None:
                        last = (now, n)
                    time.sleep(0.05)
            wall = time.monotonic() - t0
            assert proc.returncode == 0, log.read_text()[-3000:]
            totals = json.loads(re.search(r"totals (\{.*\})", log.read_text()).group(1))  # type: ignore[union-attr]
            assert first is not None and last is not None, log.read_text()[-3000:]
            busy = last[0] - first[0]
            rate = (last[1] - first[1]) / max(busy, 1e-9)
            return {"alerts": totals["out"], "wall_s": wall, "busy_s": busy, "rate": rate,
                    "mb_in": totals["bytes_in"] / 1e6, "mb_out": totals["bytes_out"] / 1e6, "mb_sent": sent / 1e6}  # fmt: skip
        finally:
            broker.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> float | None:
    """alertfilter_lean_alerts_out_total of the producer on ``port``, or None while it does not answer."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("alertfilter_lean_alerts_out_total"):
            return float(line.split()[-1])
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=6000)
    args = ap.parse_args()
    data = Path(os.environ.get("ALERTFILTER_DATA", ROOT.parent / "shared" / "data")) / "alerts"
    files = [data / "rubin-v10_0-real-20.avro", data / "rubin-v10_0-history-4.avro"]
    load0 = os.getloadavg()
    mem = in_memory(files)
    kafka = through_kafka(files, args.alerts)
    print(f"## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — lean stream (issue #14)\n")
    print(f"- command: `.venv/bin/python bench/lean_speed.py --alerts {args.alerts}`; 2 cores shared with other work, "
          f"load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end\n")  # fmt: skip
    print("| splice in memory | alerts/s | MB/s of input | mean lean bytes |\n|---|---:|---:|---:|")
    for name, rate, mbs, lean in mem:
        print(f"| {name} | {rate:,.0f} | {mbs:,.0f} | {lean:,.0f} |")
    print(f"\nThrough Kafka (`alertfilter lean`, one broker, one partition, both files mixed): {kafka['alerts']:,} alerts "
          f"({kafka['mb_in']:,.0f} MB in, {kafka['mb_out']:,.1f} MB out) in {kafka['busy_s']:.1f} s of copying "
          f"= **{kafka['rate']:,.0f} alerts/s** ({kafka['wall_s']:.1f} s with start-up and the 2 s idle exit).")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
