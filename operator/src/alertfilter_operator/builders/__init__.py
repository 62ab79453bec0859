"""Pure builders of the objects the operator applies: typed spec in, manifest dict out.

No API calls here; the reconcilers (``alertfilters.py``, ``pools.py``) fetch, call these, apply and
write status. One module per owner and place:

- :mod:`.refs`: :class:`FilterRef` and :class:`PoolInfo`, what the builders are given;
- :mod:`.runner`: an AlertFilter's ConfigMap, Deployment and NetworkPolicy (its namespace);
- :mod:`.env`: the runner container's ``ALERTFILTER_*`` environment;
- :mod:`.filter_kafka`: an AlertFilter's KafkaTopics, KafkaUser and credentials Secret;
- :mod:`.pool`: a FilterPool's Kafka, KafkaNodePool, mirror KafkaUser and KafkaMirrorMaker2.

Every builder is unit-tested without a cluster (``tests/unit/operator_tests``), and the cluster
tests check that the API server (with Strimzi's CRDs) accepts what they build.
"""

from .env import FILTER_FILE, FILTER_FILE_DIR, runner_env
from .filter_kafka import (
    build_candidates_topic,
    build_credentials_secret,
    build_dead_letter_topic,
    build_kafka_user,
    build_output_topic,
)
from .pool import build_mirror_maker2, build_mirror_user, build_pool_kafka, build_pool_node_pool, mirror_user_name
from .refs import KAFKA_PORT, STRIMZI_API, FilterRef, PoolInfo
from .runner import DEFAULT_RUNNER_RESOURCES, RUNNER_UID, build_configmap, build_deployment, build_network_policy

__all__ = [
    "DEFAULT_RUNNER_RESOURCES",
    "FILTER_FILE",
    "FILTER_FILE_DIR",
    "KAFKA_PORT",
    "RUNNER_UID",
    "STRIMZI_API",
    "FilterRef",
    "PoolInfo",
    "build_candidates_topic",
    "build_configmap",
    "build_credentials_secret",
    "build_dead_letter_topic",
    "build_deployment",
    "build_kafka_user",
    "build_mirror_maker2",
    "build_mirror_user",
    "build_network_policy",
    "build_output_topic",
    "build_pool_kafka",
    "build_pool_node_pool",
    "mirror_user_name",
    "runner_env",
]
