"""The handover between a runner's two ways of capping (:mod:`alertfilter.capstage`): what the
candidates topic asks of a replica around its run.

- With a cap stage (``--cap-stage``, several replicas): the stage runs on a thread of the runner's
  process, starting from the counts the in-process cap committed with the input offsets
  (:func:`read_seed`; the runners of a cap stage keep committing them: :class:`~alertfilter.cap.StagedCap`).
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

from .cap import VisitCap
from .capstage import CapStage, committed_offsets, stage_settings
from .clients import ClientEvents, KafkaClients, make_clients, wait_for_topics
from .metrics import Heartbeat, RunnerMetrics
from .offsets import decode_commit_metadata
from .settings import RunnerSettings
from .sink import Headers
from .visitledger import merged_counts

log = logging.getLogger("alertfilter.capstage")


def read_seed(consumer: Any, topic: str) -> dict[Hashable, int]:
    """``{visit: count}`` of the in-process cap's counts committed with ``topic``'s offsets by
    ``consumer``'s group (the largest of each visit); empty when they cannot be read."""
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = committed_offsets(consumer, [TopicPartition(topic, p) for p in parts])
    except (KafkaException, KeyError) as exc:
        log.warning("cannot read the counts of the in-process cap (%s); the stage starts without them", exc)
        return {}
    return merged_counts(decode_commit_metadata(tp.metadata) for tp in committed)


@contextlib.contextmanager
def cap_stage(
    settings: RunnerSettings,
    runner_consumer: Any,
    cap: VisitCap,
    base_headers: Headers,
    metrics: RunnerMetrics,
    stop: threading.Event,
    make: Callable[[RunnerSettings, ClientEvents], KafkaClients] = make_clients,
) -> Iterator[CapStage | None]:
    """Around the runner's run: what the candidates topic asks of this replica.

    - no candidates topic, or no cap: nothing;
    - ``--cap-stage``: a :class:`CapStage` on a thread, seeded from the in-process cap's committed
      counts; when the runner returns without a stop (``--exit-when-idle``), the stage goes on until
      its group has committed the whole candidates topic; a stage that fails sets ``stop`` (the
      runner stops) and its error is raised here;
    - otherwise (one replica, the cap in its process): before the runner starts, whatever a cap
      stage left in the candidates topic is forwarded, and ``cap`` takes the stages' counts.

    Raises:
        TopicsMissing, BrokersUnreachable: as the runner's start (the candidates topic is waited for).
        KafkaException, DeliveryFailed, TimeoutError: the stage failed.
    """
    if not settings.candidates_topic or cap.max_per_visit is None:
        yield None
        return
    wait_for_topics(runner_consumer, settings, stop, Heartbeat(settings.liveness_window()))
    own = stage_settings(settings)
    if not settings.cap_stage:
        cap.restore(
            [CapStage(own, make(own, ClientEvents(metrics, stop)), cap.max_per_visit, base_headers, metrics).drain()]
        )
        yield None
        return
    seed = read_seed(runner_consumer, settings.input_topic)
    stage = CapStage(own, make(own, ClientEvents(metrics, stop)), cap.max_per_visit, base_headers, metrics, seed)
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
