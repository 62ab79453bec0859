"""SCRAM-SHA-512 credentials of the local brokers' super users, and the client settings that use them.

The local stack's brokers authenticate every client listener with SASL SCRAM-SHA-512 and authorize
with KRaft's ``StandardAuthorizer``. A few principals are super users: the Strimzi stand-in (topics,
users, ACLs), MirrorMaker 2, and the person at the host's shell (``devstack env``). Their passwords
are generated once and kept in the devstack's state folder (``credentials.json``, mode 0600), never
in the repository; KRaft takes them at storage format time (``kafka-storage format --add-scram``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The only SASL mechanism the local brokers enable, as Strimzi's ``scram-sha-512`` authentication.
MECHANISM = "SCRAM-SHA-512"
#: The super user the Strimzi stand-in administers the brokers with (topics, SCRAM credentials, ACLs).
STANDIN_USER = "devstack-standin"
#: The super user MirrorMaker 2 reads the central broker and writes the pool broker with.
MIRROR_USER = "devstack-mirrormaker2"
#: The super user of the host's tools (``devstack env``, ``make demo``).
ADMIN_USER = "devstack-admin"
#: The super users; the first is each broker's own login (inter-broker listener, readiness check).
SUPER_USERS = (ADMIN_USER, STANDIN_USER, MIRROR_USER)
#: The credentials file's name in the devstack's state folder.
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 principal: ``User:<name>`` with its clear-text password."""

    name: str
    password: str

    def client_config(self) -> dict[str, str]:
        """librdkafka settings (``security.protocol``, ``sasl.*``) to connect as this user over a
        SASL_PLAINTEXT listener."""
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.username": self.name,
            "sasl.password": self.password,
        }

    def jaas(self) -> str:
        """The Java clients' ``sasl.jaas.config`` value for this user (what Strimzi's Secret holds)."""
        return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{self.name}" password="{self.password}";'

    def java_client_properties(self) -> dict[str, str]:
        """Java client settings (``security.protocol``, ``sasl.mechanism``, ``sasl.jaas.config``)."""
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM, "sasl.jaas.config": self.jaas()}

    def format_arg(self) -> str:
        """The ``--add-scram`` value of ``kafka-storage format`` that creates this user's credential."""
        return f"{MECHANISM}=[name={self.name},password={self.password}]"


@dataclass(frozen=True)
class BrokerAuth:
    """Authentication and authorization of a :class:`~.kafka.KafkaBroker`.

    Attributes:
        super_users: principals created at format time and listed in ``super.users``; the first is
            the broker's own login on its inter-broker listener and its readiness check's.
        trusted_loopback: also open a PLAINTEXT listener on 127.0.0.1 whose unauthenticated clients
            are super users. The controller listener already is one (KRaft's controller listener
            stays PLAINTEXT on loopback, so ``User:ANONYMOUS`` must be a super user for the broker
            to register), so this adds no power that a process on the host lacks; it keeps tools
            written before authentication working. Pods never reach loopback.
    """

    super_users: tuple[ScramUser, ...]
    trusted_loopback: bool = False

    def fingerprint(self) -> str:
        """A digest of the super users' names and passwords: storage formatted with other
        credentials must be formatted again."""
        text = "\n".join(f"{u.name}:{u.password}" for u in self.super_users)
        return hashlib.sha256(text.encode()).hexdigest()


def load_or_create(path: Path, names: Iterable[str] = SUPER_USERS) -> dict[str, ScramUser]:
    """The users of ``names`` from the credentials file ``path`` (JSON ``{name: password}``), creating
    the file (mode 0600) and any missing user's random password.

    Raises:
        OSError: the file cannot be read or written.
        ValueError: the file is not a JSON object of strings.
    """
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise ValueError(f"{path}: expected a JSON object of user name to password")
    wanted = list(names)
    missing = [n for n in wanted if n not in stored]
    if missing:
        # hex: no character that needs quoting in a JAAS string, a shell word or --add-scram's syntax
        stored.update({n: secrets.token_hex(24) for n in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f, indent=2)
    return {n: ScramUser(n, stored[n]) for n in wanted}


def load(path: Path, name: str) -> ScramUser:
    """One user of an existing credentials file.

    Raises:
        OSError: no such file.
        KeyError: the file has no such user.
    """
    return ScramUser(name, json.loads(path.read_text())[name])
