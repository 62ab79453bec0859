"""What the Strimzi stand-in's handlers share: which local broker a Strimzi cluster stands for, the
credentials the stand-in and MirrorMaker 2 connect with, and Strimzi's Ready status.

Configured by the stand-in's environment (``devstack up`` sets it):

- ``DEVSTACK_POOL_BOOTSTRAP``: the pool broker, which every Strimzi ``Kafka`` but the central one
  stands for; ``DEVSTACK_CENTRAL_BOOTSTRAP``: the broker of the ``Kafka`` named
  ``DEVSTACK_CENTRAL_NAME`` (default ``central``: the Helm chart's central Kafka);
- ``DEVSTACK_CREDENTIALS``: the super users' credentials file (``kafkaauth``); when unset the brokers
  are taken not to authenticate.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from .kafkaauth import MIRROR_USER, STANDIN_USER, ScramUser, load

GROUP, VERSION = "kafka.strimzi.io", "v1"


def pool_bootstrap() -> str:
    """The pool broker's address for host processes (topics, users, MirrorMaker 2's target).

    Raises:
        KeyError: ``DEVSTACK_POOL_BOOTSTRAP`` is not set.
    """
    return os.environ["DEVSTACK_POOL_BOOTSTRAP"]


def broker_for(cluster: str | None) -> str:
    """The local broker (``host:port``) that the Strimzi cluster named ``cluster`` stands for."""
    central = os.environ.get("DEVSTACK_CENTRAL_BOOTSTRAP")
    if cluster and central and cluster == os.environ.get("DEVSTACK_CENTRAL_NAME", "central"):
        return central
    return pool_bootstrap()


def credentials(user: str) -> ScramUser | None:
    """The super user ``user`` (``kafkaauth.STANDIN_USER`` or ``MIRROR_USER``) from
    ``DEVSTACK_CREDENTIALS``, or None when the brokers do not authenticate.

    Raises:
        OSError, KeyError: the file is missing or lacks the user.
    """
    path = os.environ.get("DEVSTACK_CREDENTIALS")
    return load(Path(path), user) if path else None


def client_config(bootstrap: str, user: str = STANDIN_USER) -> dict[str, Any]:
    """librdkafka settings to reach ``bootstrap`` as the super user ``user`` (when the brokers authenticate)."""
    creds = credentials(user)
    return {"bootstrap.servers": bootstrap, "log_level": "3", **(creds.client_config() if creds else {})}


def admin_for(cluster: str | None) -> AdminClient:
    """An Admin client, as the stand-in's super user, on the broker the Strimzi cluster stands for."""
    return AdminClient(client_config(broker_for(cluster)))


def mirror_client_properties() -> dict[str, str]:
    """MirrorMaker 2's Java client settings for both brokers (its super user), {} without authentication."""
    creds = credentials(MIRROR_USER)
    return creds.java_client_properties() if creds else {}


def now() -> str:
    """The current time as Strimzi writes ``lastTransitionTime`` (UTC, seconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready(generation: int | None, **extra: Any) -> dict[str, Any]:
    """A Strimzi status: condition Ready=True, ``observedGeneration`` and ``extra`` fields."""
    return {
        "conditions": [{"type": "Ready", "status": "True", "reason": "DevstackReady", "lastTransitionTime": now()}],
        "observedGeneration": generation,
        **extra,
    }


def not_ready(generation: int | None, reason: str, message: str) -> dict[str, Any]:
    """A Strimzi status with condition Ready=False (``reason`` in CamelCase, ``message`` for people)."""
    return {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": reason, "message": message, "lastTransitionTime": now()}
        ],
        "observedGeneration": generation,
    }
