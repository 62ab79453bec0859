"""Batches in flight: produced, their outputs not all acknowledged yet, their offsets not committed.

The runner no longer waits for a batch's records before it produces the next one. Each produced
batch is an :class:`InFlight` whose ``outstanding`` count the sink's delivery reports bring down
(:class:`alertfilter.sink.Sink`); :meth:`Ledger.acknowledged` hands back the oldest batches whose
records are all acknowledged, in the order they were consumed, and stops at the first that is not:
so a committed offset is never past an output still unacknowledged, on any partition.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition


@dataclass(eq=False)
class InFlight:
    """One batch as produced.

    Attributes:
        part: the batch's messages, in order (for a rewind).
        done: how many of them were processed (the rest is read again by the next run or retry).
        offsets: what to commit for them: one past the last processed message of each partition,
            with the cap's snapshot after this batch as metadata (:meth:`Offsets.offsets`).
        checkpoint: the cap's counts after this batch (what a rewind to here returns to).
        outstanding: records produced for it and not yet acknowledged (the sink counts them).
    """

    part: list[Any]
    done: int = 0
    offsets: list[TopicPartition] = field(default_factory=list)
    checkpoint: OrderedDict[Hashable, int] = field(default_factory=OrderedDict)
    outstanding: int = 0
    closed: bool = False

    def close(self, done: int, offsets: list[TopicPartition], checkpoint: OrderedDict[Hashable, int]) -> None:
        """Producing is over: ``done`` messages processed, to be committed as ``offsets``."""
        self.done, self.offsets, self.checkpoint, self.closed = done, offsets, checkpoint, True


class Ledger:
    """The batches in flight, oldest first."""

    def __init__(self) -> None:
        self._batches: deque[InFlight] = deque()

    def __len__(self) -> int:
        return len(self._batches)

    def add(self, batch: InFlight) -> None:
        """Note a batch being produced (the newest)."""
        self._batches.append(batch)

    def acknowledged(self) -> list[InFlight]:
        """Remove and return the oldest closed batches whose records are all acknowledged."""
        out: list[InFlight] = []
        while self._batches and self._batches[0].closed and self._batches[0].outstanding <= 0:
            out.append(self._batches.popleft())
        return out

    def drain(self) -> list[InFlight]:
        """Remove and return every batch (after waiting for all acknowledgements, or to rewind them)."""
        out = list(self._batches)
        self._batches.clear()
        return out


def merged_offsets(batches: Iterable[InFlight]) -> list[TopicPartition]:
    """The offsets to commit after ``batches`` (oldest first): each partition's latest, with the
    newest batch's metadata (the cap's counts after all of them) on every partition."""
    latest: dict[tuple[str, int], TopicPartition] = {}
    meta: str | None = None
    for b in batches:
        for tp in b.offsets:
            latest[(tp.topic, tp.partition)] = tp
            meta = tp.metadata
    return [TopicPartition(tp.topic, tp.partition, tp.offset, meta) if meta else tp for tp in latest.values()]
