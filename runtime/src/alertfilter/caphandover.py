"""The handover between a runner's two ways of capping (:mod:`alertfilter.capstage`): what the
candidates topic asks of a replica around its run.

- With a cap stage (``--cap-stage``, several replicas): the stage runs on a thread of the runner's
  process, starting from the counts the in-process cap committed with the input offsets
  (:func:`input_counts`; the runners of a cap stage keep committing them: :class:`~alertfilter.cap.StagedCap`).
- Without (one replica, ``--candidates-topic`` only): before the runner starts, whatever the stages
  left in the candidates topic is forwarded and the in-process cap starts from their counts.

The operator replaces every pod at such a change (``Recreate``), so the two never run at once, and
each visit in flight keeps its count across the change.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from .capstage import CapStage, committed_offsets, stage_settings
from .clients import ClientEvents, KafkaClients, make_clients, wait_for_topics
from .metrics import Heartbeat
from .offsets import decode_commit_metadata
from .positions import read_mark
from .settings import RunnerSettings
from .visitledger import merged_counts

log = logging.getLogger("alertfilter.capstage")


def input_counts(consumer: Any, s: RunnerSettings) -> tuple[dict[Hashable, int], int]:
    """The in-process cap's counts committed with the input's offsets by ``consumer``'s group, and
    the replay request they belong to: ``({visit: count}, generation)``. The generation is the
    latest replay request (the runner's ``--replay-id``, or the latest mark the partitions carry;
    0 before any); only the partitions that carry it give counts (the others are still to be
    rewound, their counts to be forgotten). ``({}, generation)`` when the offsets cannot be read."""
    topic = s.input_topic
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = committed_offsets(consumer, [TopicPartition(topic, p) for p in parts])
    except (KafkaException, KeyError) as exc:
        log.warning("cannot read the counts of the in-process cap (%s); the stage starts without them", exc)
        return {}, s.replay_id or 0
    marks = [(mk.request if (mk := read_mark(tp.metadata)) else 0) for tp in committed]
    generation = max([s.replay_id or 0, *marks])
    kept = [tp.metadata for tp, g in zip(committed, marks, strict=True) if g == generation]
    return merged_counts(decode_commit_metadata(m) for m in kept), generation


def replay_generation(positions: Any) -> Callable[[], int]:
    """The replay request a runner's input is read under, for its candidates: the latest mark of
    its assigned partitions (each is rewound to the current request when assigned; 0 before any)."""
    return lambda: max((mk.request for mk in positions.marks.values() if mk is not None), default=0)


@contextlib.contextmanager
def cap_stage(
    runner: Any, stop: threading.Event, make: Callable[[RunnerSettings, ClientEvents], KafkaClients] = make_clients
) -> Iterator[CapStage | None]:
    """Around ``runner``'s run (a :class:`~alertfilter.runner.Runner`: its settings, consumer, cap,
    metrics, sink and positions): what the candidates topic asks of this replica.

    - no candidates topic, or no cap: nothing;
    - ``--cap-stage``: a :class:`CapStage` on a thread, seeded from the in-process cap's committed
      counts (:func:`input_counts`), and the runner's candidates stamped with their replay request;
      when the runner returns without a stop (``--exit-when-idle``), the stage goes on until its
      group has committed the whole candidates topic; a stage that fails sets ``stop`` (the runner
      stops) and its error is raised here;
    - otherwise (one replica, the cap in its process): before the runner starts, whatever a cap
      stage left in the candidates topic is forwarded, and the runner's cap takes the stages'
      counts (those of the current replay request).

    Raises:
        TopicsMissing, BrokersUnreachable: as the runner's start (the candidates topic is waited for).
        KafkaException, DeliveryFailed, TimeoutError: the stage failed.
    """
    settings, cap, metrics = runner.settings, runner.cap, runner.metrics
    if not settings.candidates_topic or cap.max_per_visit is None:
        yield None
        return
    wait_for_topics(runner.consumer, settings, stop, Heartbeat(settings.liveness_window()))
    own = stage_settings(settings)
    seed, generation = input_counts(runner.consumer, settings)
    clients = make(own, ClientEvents(metrics, stop))
    if not settings.cap_stage:
        counts, drained = CapStage(own, clients, cap.max_per_visit, runner.sink.base_headers, metrics).drain()
        if drained == generation:  # a replay's first run counts afresh
            cap.restore([counts])
        yield None
        return
    runner.sink.generation = replay_generation(runner.positions)
    stage = CapStage(own, clients, cap.max_per_visit, runner.sink.base_headers, metrics, seed, generation)
    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            stage.run()
        except BaseException as exc:  # handed to the main thread
            log.exception("the cap stage failed; stopping the runner")
            failure.append(exc)
            stop.set()

    thread = threading.Thread(target=guarded, name="cap-stage", daemon=True)
    thread.start()
    try:
        yield stage
        stage.check_done.set()  # the runner idled out: the stage goes on until its group is done
        while not stop.is_set() and thread.is_alive() and not stage.finished.wait(1.0):
            pass
    finally:
        stage.halt.set()
        thread.join(90)
    if failure:
        raise failure[0]
