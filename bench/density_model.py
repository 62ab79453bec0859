"""The pure parts of the density benchmark (``bench/density.py``): fresh ids spliced into real alerts,
the visit schedule, the filters' known verdicts, latency percentiles and the per-node estimate.

Nothing here touches Kafka, processes or the clock; ``tests/unit/test_density_bench.py`` tests it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Confluent wire format: magic byte 0 and a 4-byte big-endian schema id before the Avro body.
HEADER_BYTES = 5
#: Each filter accepts the alerts whose diaSourceId is ``residue`` modulo this: 1 % of the stream
#: (a science filter forwards a few alerts per visit), a known set, different for each filter
#: (residue = runner index % ACCEPT_MODULUS).
ACCEPT_MODULUS = 100
#: Rubin's requirement (DMTN-102): 98 % of alerts within 60 s of the end of their visit.
LATENCY_LIMIT_S = 60.0


# --- Avro longs -----------------------------------------------------------------------------------
def encode_long(n: int) -> bytes:
    """An Avro ``long``: zig-zag, then a little-endian base-128 varint (1 to 10 bytes)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def decode_long(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The Avro ``long`` at ``buf[pos:]``: ``(value, position after it)``.

    Raises:
        ValueError: the varint runs past the buffer or past 10 bytes.
    """
    z = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong Avro long")
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7


def _skip(schema: Any, buf: bytes, pos: int) -> int:
    """Position after a value of ``schema`` (primitives and unions of them: what precedes the
    replaced fields in Rubin's alert schemas).

    Raises:
        ValueError: a type this splicer does not skip (the benchmark's alerts never have one).
    """
    if isinstance(schema, list):  # union: branch index, then the branch
        branch, pos = decode_long(buf, pos)
        return _skip(schema[branch], buf, pos)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "null":
        return pos
    if kind == "boolean":
        return pos + 1
    if kind in ("int", "long"):
        return decode_long(buf, pos)[1]
    if kind == "float":
        return pos + 4
    if kind == "double":
        return pos + 8
    if kind in ("string", "bytes"):
        n, pos = decode_long(buf, pos)
        return pos + n
    raise ValueError(f"cannot skip Avro type {kind!r} before the fields to replace")


@dataclass(frozen=True)
class Splicer:
    """Writes fresh ids and a visit into Confluent-framed alerts without decoding them.

    ``id_paths`` and ``visit_path`` are dotted paths of ``long`` fields (e.g. ``diaSourceId``,
    ``diaSource.diaSourceId``, ``diaSource.visit``); every field before them in the writer schema
    must be a primitive or a union of primitives, and the records on their paths must not be
    nullable. Rubin v10's ids and visit are the alert's first four fields, so a copy costs one
    bytes concatenation of the body's tail, whatever the alert's size.
    """

    schema: dict[str, Any]
    id_paths: tuple[str, ...]
    visit_path: str

    def __post_init__(self) -> None:
        """Raises ValueError when a path is not a field of the schema (checked once, not per copy)."""
        for path in (*self.id_paths, self.visit_path):
            record: Any = self.schema
            for name in path.split("."):
                fields = record.get("fields", []) if isinstance(record, dict) else []
                record = next((f["type"] for f in fields if f["name"] == name), None)
                if record is None:
                    raise ValueError(f"field {path!r} not found in schema {self.schema.get('name')!r}")

    def copy(self, value: bytes, alert_id: int, visit: int) -> bytes:
        """``value`` with every id path set to ``alert_id`` and the visit path to ``visit``.

        Raises:
            ValueError: a path is not in the schema, or a field before it cannot be skipped.
        """
        targets = dict.fromkeys(self.id_paths, alert_id)
        targets[self.visit_path] = visit
        parts: list[bytes | memoryview] = [value[:HEADER_BYTES]]
        pos = self._walk(self.schema, "", value, HEADER_BYTES, targets, parts)
        if targets:
            raise ValueError(f"fields not found in the schema: {sorted(targets)}")
        parts.append(memoryview(value)[pos:])  # the tail (cutouts) is copied once, by join
        return b"".join(parts)

    def _walk(
        self,
        record: dict[str, Any],
        prefix: str,
        buf: bytes,
        pos: int,
        targets: dict[str, int],
        parts: list[bytes | memoryview],
    ) -> int:
        """Copy ``record``'s fields into ``parts`` until every target below ``prefix`` is written."""
        mark = pos
        for f in record["fields"]:
            if not any(t.startswith(prefix) for t in targets):
                break
            path = prefix + f["name"]
            ftype = f["type"]
            if path in targets:
                parts.append(buf[mark:pos])
                pos = decode_long(buf, pos)[1]
                parts.append(encode_long(targets.pop(path)))
                mark = pos
            elif (
                isinstance(ftype, dict)
                and ftype.get("type") == "record"
                and any(t.startswith(path + ".") for t in targets)
            ):
                parts.append(buf[mark:pos])
                pos = self._walk(ftype, path + ".", buf, pos, targets, parts)
                mark = pos
            else:
                pos = _skip(ftype, buf, pos)
        parts.append(buf[mark:pos])
        return pos


def alert_id(value: bytes | memoryview, id_offset: int = 0) -> int:
    """The first field of a Confluent-framed alert's body as an Avro long (Rubin v10: diaSourceId)."""
    return decode_long(value, HEADER_BYTES + id_offset)[0]


# --- the visit schedule ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Visit:
    """One visit of the feed: ``size`` alerts, produced from ``start_s`` after the feed starts, with
    sequence numbers ``first_seq .. first_seq + size - 1`` (alert id = id base + sequence number)."""

    index: int
    start_s: float
    size: int
    visit_id: int
    first_seq: int
    peak: bool

    @property
    def seqs(self) -> range:
        return range(self.first_seq, self.first_seq + self.size)


def visit_schedule(visits: int, per_visit: int, peak: int, cadence_s: float, first_visit_id: int) -> list[Visit]:
    """``visits`` nominal visits of ``per_visit`` alerts every ``cadence_s`` seconds, then (when
    ``peak`` > 0) one peak visit of ``peak`` alerts one cadence later.

    Raises:
        ValueError: a negative count, no visit at all, or a cadence that is not positive.
    """
    if visits < 0 or per_visit < 0 or peak < 0:
        raise ValueError("visit counts must not be negative")
    if cadence_s <= 0:
        raise ValueError(f"the cadence must be positive, not {cadence_s}")
    sizes = [per_visit] * visits + ([peak] if peak else [])
    if not any(sizes):
        raise ValueError("the schedule has no alert")
    out, seq = [], 0
    for i, n in enumerate(sizes):
        out.append(Visit(i, i * cadence_s, n, first_visit_id + i, seq, peak > 0 and i == len(sizes) - 1))
        seq += n
    return out


def accepted_seqs(visit: Visit, residue: int, modulus: int = ACCEPT_MODULUS) -> range:
    """The sequence numbers of ``visit`` a filter with ``residue`` accepts (the id base is a multiple
    of ``modulus``, so the alert id and its sequence number have the same residue)."""
    first = visit.first_seq + (residue - visit.first_seq) % modulus
    return range(first, visit.first_seq + visit.size, modulus)


def visit_of(seq: int, schedule: list[Visit]) -> Visit | None:
    """The visit holding sequence number ``seq`` (None: not produced in this schedule)."""
    for v in schedule:
        if v.first_seq <= seq < v.first_seq + v.size:
            return v
    return None


# --- latencies ------------------------------------------------------------------------------------
def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``xs``: the smallest value with at least q % of the
    values at or below it; ``inf`` values (accepted alerts that never arrived) sort last; NaN when
    ``xs`` is empty.

    Raises:
        ValueError: ``q`` outside 0-100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0-100, not {q}")
    if not xs:
        return math.nan
    s = sorted(xs)
    k = max(1, math.ceil(q / 100 * len(s)))
    return s[k - 1]


@dataclass
class LatencySummary:
    """Latencies of one visit over every filter, seconds from the visit's last produced alert to each
    accepted alert's record on its output topic (a missing one counts as infinitely late)."""

    expected: int
    arrived: int
    missing: int
    p50_s: float
    p98_s: float
    max_s: float
    within_limit: float  # share of the expected accepted alerts within LATENCY_LIMIT_S

    @property
    def ok(self) -> bool:
        """p98 under the limit (missing alerts count as late)."""
        return self.expected > 0 and self.p98_s < LATENCY_LIMIT_S


def summarise(latencies: list[float], expected: int) -> LatencySummary:
    """Percentiles of ``latencies`` (s) with ``expected - len(latencies)`` missing alerts as ``inf``.

    Raises:
        ValueError: more latencies than expected alerts (duplicates must be removed first).
    """
    if len(latencies) > expected:
        raise ValueError(f"{len(latencies)} latencies for {expected} expected alerts")
    missing = expected - len(latencies)
    xs = latencies + [math.inf] * missing
    within = sum(x <= LATENCY_LIMIT_S for x in xs) / expected if expected else math.nan
    return LatencySummary(
        expected, len(latencies), missing, percentile(xs, 50), percentile(xs, 98), max(xs) if xs else math.nan, within
    )


# --- what one run implies ---------------------------------------------------------------------------
#: How late a nominal visit may start, and how much longer than the cadence it may take to be
#: produced, s, for the step to count as fed at the nominal rate. Past it the machine could not feed
#: 10,000 alerts per 39 s, and low latencies of a slowed stream say nothing of the nominal rate.
CADENCE_SLACK_S = 5.0


def cadence_problem(visits: list[dict[str, Any]], cadence: float) -> str | None:
    """Why the feed did not hold the nominal rate over a step's nominal ``visits`` (their
    ``started_late_s`` and ``produce_s``, s), or None when it did."""
    for v in visits:
        if v["peak"]:
            continue
        if v["started_late_s"] > CADENCE_SLACK_S or v["produce_s"] > cadence + CADENCE_SLACK_S:
            return (
                f"the feed did not hold the nominal rate: visit {v['visit']} started {v['started_late_s']:.0f} s late "
                f"and took {v['produce_s']:.0f} s to produce (cadence {cadence:g} s)"
            )
    return None


def n_max(passed: dict[int, bool]) -> tuple[int, int | None]:
    """``(largest N that passed below the first failure, first N that failed)`` of a sweep
    ``{N: passed}``: 0 when the smallest N failed; None when nothing failed."""
    best, first_fail = 0, None
    for n in sorted(passed):
        if not passed[n]:
            first_fail = n
            break
        best = n
    return best, first_fail


def per_node(
    n_max_here: int,
    cores_here: int,
    runner_millicores: float | None,
    runner_mib: float | None,
    node_vcpu: int = 16,
    node_gib: int = 64,
    reserved_vcpu: float = 1.0,
    reserved_gib: float = 4.0,
) -> dict[str, float | None]:
    """Runners per node (m4.4xlarge: 16 vCPU, 64 GiB) two ways.

    - ``linear``: N_max here x node vCPU / cores here. Assumes a vCPU there does what a core does
      here, and counts the brokers, MirrorMaker 2 and the producer that shared these cores as
      runner load: pessimistic, as a pool node runs only runners.
    - ``by_cpu`` / ``by_memory``: what the node has left after ``reserved_*`` (kubelet, system
      pods) divided by one runner's measured CPU at the nominal rate and its memory; ``requests``
      is the smaller of the two.
    """
    linear = n_max_here * node_vcpu / cores_here if cores_here else None
    by_cpu = (node_vcpu - reserved_vcpu) * 1000 / runner_millicores if runner_millicores else None
    by_mem = (node_gib - reserved_gib) * 1024 / runner_mib if runner_mib else None
    both = [x for x in (by_cpu, by_mem) if x is not None]
    return {"linear": linear, "by_cpu": by_cpu, "by_memory": by_mem, "requests": min(both) if both else None}


def next_n(passed: dict[int, bool], ns: list[int], refine_left: int) -> tuple[int | None, bool]:
    """The next N of a sweep, and whether it is a refinement (a bisection between a pass and a fail).

    Up the list ``ns`` (then doubling past its end) while every N passes; when the smallest N tried
    fails, half of it (down to 1); once a pass and a fail bracket N_max, their midpoint while
    ``refine_left`` > 0 and they are more than one apart; None when the sweep is done.
    """
    if not passed:
        return (ns[0] if ns else None), False
    best, fail = n_max(passed)
    if fail is None:
        top = max(passed)
        return next((n for n in sorted(ns) if n > top), 2 * top), False
    if best == 0:
        lower = fail // 2
        return (lower if lower >= 1 and lower not in passed else None), False
    if fail - best > 1 and refine_left > 0:
        return (best + fail) // 2, True
    return None, False
