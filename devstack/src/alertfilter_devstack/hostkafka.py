"""The local stack's two Kafka brokers on the host ("central" and the pool's), with authentication.

Both take SASL SCRAM-SHA-512 on every client listener and enforce ACLs with KRaft's
``StandardAuthorizer``. Their super users (``kafkaauth.SUPER_USERS``: the host's tools, the Strimzi
stand-in, MirrorMaker 2) have random passwords kept in the state folder's ``credentials.json``;
every other user is a KafkaUser's, made by the stand-in. Each broker's entry in the state
(``st["kafka_central"]``, ``st["kafka_pool"]``):

- ``sasl_bootstrap``: ``127.0.0.1:<port>``, SASL SCRAM-SHA-512 (what ``devstack env`` exports);
- ``bootstrap`` (= ``trusted_bootstrap``): a PLAINTEXT loopback listener whose clients are super
  users, so that callers written before authentication (tests, benchmarks) keep working; it gives
  nothing a process on the host lacks (``kafkaauth.BrokerAuth.trusted_loopback``);
- ``pod_target`` (pool only): the SASL listener on the kind network's gateway, behind the broker pods;
- ``pid``, ``auth`` (the credentials' fingerprint: a broker started with others is restarted).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from . import kafkaauth
from .kafka import KafkaBroker
from .procs import pid_alive, stop_group

#: JVM heap of each broker.
HEAP = "384m"


def _say(msg: str) -> None:
    print(msg, flush=True)  # noqa: T201 - devstack up reports progress on stdout


def brokers_up(st: dict[str, Any], d: Path, gateway: str, pool_service: str) -> None:
    """Start both brokers, or keep the running ones that have the current credentials and (pool) the
    current gateway; record them, the credentials file and a client properties file in ``st``.

    Args:
        st: the devstack state, updated in place.
        d: the state folder (brokers' data in ``kafka-central/`` and ``kafka-pool/``).
        gateway: the kind network's gateway address, where the pool broker's pod listener binds.
        pool_service: ``host:port`` the pod listener advertises (the pool Kafka's bootstrap Service).

    Raises:
        RuntimeError: a broker did not start (the message carries its log's end).
    """
    creds_file = d / kafkaauth.CREDENTIALS_FILE
    users = kafkaauth.load_or_create(creds_file)
    auth = kafkaauth.BrokerAuth(tuple(users[n] for n in kafkaauth.SUPER_USERS), trusted_loopback=True)
    for name in ("central", "pool"):
        old = st.get(f"kafka_{name}") or {}
        # a pool broker whose pod listener is on another gateway (a new kind network) must restart,
        # and so must a broker started without these credentials
        same_gateway = name == "central" or (old.get("pod_target") or "").startswith(f"{gateway}:")
        if pid_alive(old.get("pid")) and old.get("auth") == auth.fingerprint() and same_gateway:
            _say(f"   {name}: {old['sasl_bootstrap']} (running)")
            continue
        if old.get("pid"):
            stop_group(old["pid"])
        pod_listener = (gateway, pool_service) if name == "pool" else None
        b = KafkaBroker(d / f"kafka-{name}", heap=HEAP, pod_listener=pod_listener, auth=auth).start()
        st[f"kafka_{name}"] = {
            "sasl_bootstrap": b.bootstrap,
            "bootstrap": b.trusted_bootstrap,
            "trusted_bootstrap": b.trusted_bootstrap,
            "auth": auth.fingerprint(),
            "pid": b.proc.pid if b.proc else None,
            "pod_target": f"{gateway}:{b.pod_port}" if pod_listener else "",
        }
        b.proc = None  # keep it running after this process
        _say(f"   {name}: {b.bootstrap}" + (f", for pods {gateway}:{b.pod_port}" if pod_listener else ""))
    st["credentials"] = str(creds_file)
    st["client_properties"] = str(_write_client_properties(d, users[kafkaauth.ADMIN_USER]))


def admin_config(st: dict[str, Any]) -> dict[str, str]:
    """librdkafka settings (``security.protocol``, ``sasl.*``) of the host's super user
    (``kafkaauth.ADMIN_USER``), for the brokers' ``sasl_bootstrap`` addresses.

    Raises:
        OSError, KeyError: the stack has no credentials file (it is down, or predates authentication).
    """
    return kafkaauth.load(Path(st["credentials"]), kafkaauth.ADMIN_USER).client_config()


def _write_client_properties(d: Path, user: kafkaauth.ScramUser) -> Path:
    """A Java client properties file for Kafka's own tools (``--command-config``) as ``user``."""
    path = d / "client.properties"
    path.touch(mode=0o600)  # it holds a password
    path.chmod(0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in user.java_client_properties().items()))
    return path


def env_lines(st: dict[str, Any]) -> list[str]:
    """``devstack env``'s shell lines for Kafka: both bootstrap addresses and the host's super user's
    settings, as ``-X`` arguments (``alertfilter produce/consume``), ``ALERTFILTER_KAFKA_*`` variables
    (``alertfilter run``) and a properties file (Kafka's tools)."""
    if not st.get("credentials"):
        return ["# this stack predates authentication: run `devstack up`"]
    auth = admin_config(st)
    x_args = " ".join(f"-X {k}={v}" for k, v in auth.items())
    variables = [
        f"export ALERTFILTER_KAFKA_{k.upper().replace('.', '_')}={shlex.quote(v)}   # alertfilter run"
        for k, v in auth.items()
    ]
    return [
        f"export CENTRAL_BOOTSTRAP={st['kafka_central']['sasl_bootstrap']}   # produce alerts to topic 'alerts' here",
        f"export POOL_BOOTSTRAP={st['kafka_pool']['sasl_bootstrap']}   # filtered topics live here",
        "# both brokers take SASL SCRAM-SHA-512 only; the host's super user's settings:",
        f"export KAFKA_AUTH_ARGS={shlex.quote(x_args)}   # alertfilter produce/consume ... $KAFKA_AUTH_ARGS",
        *variables,
        f"export KAFKA_CLIENT_PROPERTIES={st['client_properties']}   # Kafka's own tools: --command-config",
    ]
