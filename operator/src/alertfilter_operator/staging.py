"""Which AlertFilters have a candidates topic: the accepted alerts of every replica, keyed by
visit, that the runners' cap stages cap and forward (``alertfilter.capstage``), so that the
per-visit cap stays exact with several replicas.

A filter has one while it has a cap and several replicas, and keeps it after (its KafkaTopic is
never removed before the filter): a lone runner then forwards what the cap stages left in it, and
a filter scaled up again finds their counts.
"""

from __future__ import annotations

from typing import Any

from .kube import Kube
from .models import AlertFilterSpec
from .naming import candidates_topic
from .ownership import owner_uid


def has_candidates(kube: Kube, namespace: str, name: str, uid: str, spec: AlertFilterSpec, kafka_ns: str) -> bool:
    """Whether the filter ``namespace/name`` (``uid``) has a candidates topic in ``kafka_ns`` (the
    pool's Kafka namespace): a cap and several replicas, or a candidates KafkaTopic it owns."""
    if spec.maxAlertsPerVisit and spec.replicas > 1:
        return True
    topic = kube.get("KafkaTopic", candidates_topic(namespace, name), kafka_ns)
    return topic is not None and owner_uid(topic) == uid


def topic_roles(body: dict[str, Any]) -> tuple[str, ...]:
    """The roles of the KafkaTopics a filter's ``body`` names in its status (``output``,
    ``deadletter``, and ``candidates`` when ``status.names`` has a candidates topic)."""
    names = (body.get("status") or {}).get("names") or {}
    return ("output", "deadletter", "candidates") if names.get("candidatesTopic") else ("output", "deadletter")


def topics_said(body: dict[str, Any]) -> str:
    """Those topics in words: ``output and dead-letter`` or ``output, dead-letter and candidates``."""
    return "output, dead-letter and candidates" if len(topic_roles(body)) == 3 else "output and dead-letter"
