"""A real Apache Kafka 4.x broker (KRaft, combined broker+controller) run from its Maven Central jars.

The jars come from ``hack/fetch-kafka.sh`` (cached under ``.cache/kafka/<version>/libs``).
Usage::

    with KafkaBroker(workdir) as broker:
        broker.bootstrap   # "127.0.0.1:<port>"

With ``auth`` (:class:`~.kafkaauth.BrokerAuth`) every client listener takes SASL SCRAM-SHA-512 only
and KRaft's ``StandardAuthorizer`` enforces ACLs; ``broker.client_config()`` gives a super user's
client settings. Without it (the default, as the integration tests use it) nothing authenticates.

or from a shell: ``python -m alertfilter_devstack.kafka start DIR`` / ``stop DIR``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .kafkaauth import MECHANISM, BrokerAuth
from .procs import free_port, port_open, repo_root, stop_process, wait_until

#: Largest message the broker accepts, bytes. Rubin alerts are 50-250 KB (DMTN-102); a filter's
#: output keeps the original bytes, so topics must take at least that plus headers.
MESSAGE_MAX_BYTES = 10 * 1024 * 1024


def kafka_libs() -> Path:
    """Directory of the Kafka jars, fetched by ``hack/fetch-kafka.sh`` when missing.

    Raises:
        RuntimeError: when the fetch fails (no Maven, no Java, registry unreachable).
    """
    env_dir = os.environ.get("KAFKA_LIBS_DIR")
    script = repo_root() / "hack" / "fetch-kafka.sh"
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=os.environ.copy())
    if res.returncode != 0:
        raise RuntimeError(f"fetching the Kafka jars failed ({script}):\n{res.stderr[-4000:]}")
    return Path(env_dir or res.stdout.strip().splitlines()[-1])


def java_bin() -> str:
    """The ``java`` executable: ``$JAVA_HOME/bin/java`` when set, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def _cluster_id() -> str:
    """A KRaft cluster id (base64url of 16 random bytes). One starting with '-' would be read as an
    option by the storage tool, so such ids are drawn again."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class KafkaBroker:
    """One single-node KRaft Kafka broker on free loopback ports.

    Attributes:
        workdir: folder for its config, data (``data/``) and log (``kafka.log``).
        port: client port (PLAINTEXT; SASL_PLAINTEXT with ``auth``); chosen free when 0.
        heap: JVM heap, e.g. ``"512m"``.
        pod_listener: ``(bind address, advertised "host:port")`` of a second listener for clients
            elsewhere (the local stack's runner pods, through its broker pod on the kind network's
            gateway); its port is chosen free at the first start and kept.
        auth: SASL SCRAM-SHA-512 on the client (``port``) and pod listeners, the ``StandardAuthorizer``
            and its super users; None: PLAINTEXT without authorization.
        trusted_port: with ``auth.trusted_loopback``, the PLAINTEXT loopback listener whose clients
            are super users; chosen free at the first start and kept.
    """

    workdir: Path
    port: int = 0
    heap: str = "512m"
    extra_config: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    pod_listener: tuple[str, str] | None = None
    pod_port: int = 0
    auth: BrokerAuth | None = None
    trusted_port: int = 0

    @property
    def bootstrap(self) -> str:
        """The bootstrap address, ``127.0.0.1:<port>`` (SASL SCRAM-SHA-512 with ``auth``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def trusted_bootstrap(self) -> str:
        """``127.0.0.1:<trusted_port>``, the unauthenticated super-user listener (``auth.trusted_loopback``).

        Raises:
            ValueError: the broker has no such listener.
        """
        if not (self.auth and self.auth.trusted_loopback):
            raise ValueError("this broker has no trusted loopback listener")
        return f"127.0.0.1:{self.trusted_port}"

    def client_config(self) -> dict[str, str]:
        """librdkafka settings to reach ``bootstrap`` as the first super user (only
        ``bootstrap.servers`` without ``auth``)."""
        extra = self.auth.super_users[0].client_config() if self.auth else {}
        return {"bootstrap.servers": self.bootstrap, **extra}

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    def _auth_config(self) -> dict[str, str]:
        """Settings of SASL SCRAM-SHA-512 and the ``StandardAuthorizer`` (none without ``auth``)."""
        if not self.auth:
            return {}
        own = self.auth.super_users[0]
        # User:ANONYMOUS is the principal of the PLAINTEXT controller listener (the broker registers
        # and heartbeats through it) and of the trusted loopback listener.
        supers = ";".join(["User:ANONYMOUS", *(f"User:{u.name}" for u in self.auth.super_users)])
        # Every SASL listener needs a JAAS entry; the server side of SCRAM needs only the module
        # (credentials come from the metadata log), the inter-broker one also the broker's login.
        pods = {"listener.name.pods.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"} if self.pod_listener else {}
        return {
            **pods,
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "inter.broker.listener.name": "CLIENT",
            "listener.name.client.scram-sha-512.sasl.jaas.config": own.jaas(),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": supers,
        }

    def _write_config(self, controller_port: int) -> Path:
        client, proto = ("CLIENT", "SASL_PLAINTEXT") if self.auth else ("PLAINTEXT", "PLAINTEXT")
        listeners = f"{client}://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}"
        advertised = f"{client}://127.0.0.1:{self.port}"
        protocols = f"{client}:{proto},CONTROLLER:PLAINTEXT"
        if self.pod_listener:
            listeners += f",PODS://{self.pod_listener[0]}:{self.pod_port}"
            advertised += f",PODS://{self.pod_listener[1]}"
            protocols += f",PODS:{proto}"
        if self.auth and self.auth.trusted_loopback:
            listeners += f",TRUSTED://127.0.0.1:{self.trusted_port}"
            advertised += f",TRUSTED://127.0.0.1:{self.trusted_port}"
            protocols += ",TRUSTED:PLAINTEXT"
        cfg = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
            "listeners": listeners,
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": protocols,
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(MESSAGE_MAX_BYTES),
            "replica.fetch.max.bytes": str(MESSAGE_MAX_BYTES),
            "auto.create.topics.enable": "false",
            "log.retention.hours": "24",
            **self._auth_config(),
            **self.extra_config,
        }
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
        return path

    def start(self, timeout_s: float = 90.0) -> "KafkaBroker":
        """Format storage (first start only) and start the broker; wait until it accepts clients.

        Raises:
            RuntimeError: the broker exited or did not open its port in ``timeout_s``; the message
                carries the end of its log, which stays in ``workdir``.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        libs = kafka_libs()
        state_file = self.workdir / "ports.json"
        if state_file.exists() and not self.port:
            saved = json.loads(state_file.read_text())
            self.port, controller_port = saved["port"], saved["controller_port"]
            self.pod_port = saved.get("pod_port", 0)
            self.trusted_port = saved.get("trusted_port", 0)
        else:
            self.port = self.port or free_port()
            controller_port = free_port()
        if self.pod_listener and not self.pod_port:
            self.pod_port = free_port()
        if self.auth and self.auth.trusted_loopback and not self.trusted_port:
            self.trusted_port = free_port()
        config = self._write_config(controller_port)
        cp = f"{libs}/*"
        java = java_bin()
        log4j = self.workdir / "log4j2.properties"
        log4j.write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\n"
            "appender.out.type=Console\nappender.out.name=OUT\n"
            "appender.out.layout.type=PatternLayout\nappender.out.layout.pattern=[%d] %p %m (%c)%n\n"
            "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
            "logger.server.name=org.apache.kafka.server\nlogger.server.level=INFO\n"
        )
        jvm = [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
               f"-Dlog4j2.configurationFile={log4j}", "-cp", cp]
        self._format(jvm, config)
        state_file.write_text(json.dumps({"port": self.port, "controller_port": controller_port,
                                          "pod_port": self.pod_port, "trusted_port": self.trusted_port}))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(jvm + ["kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        (self.workdir / "kafka.pid").write_text(str(self.proc.pid))
        try:
            wait_until(self._ready, timeout_s, f"Kafka broker on {self.bootstrap}", self.proc, self.log_path)
        except Exception:
            self.stop()
            raise
        return self

    def _format(self, jvm: list[str], config: Path) -> None:
        """Format the KRaft storage unless it is already formatted with the same super users.

        The super users' SCRAM credentials can only be bootstrapped at format time; storage formatted
        without them (or with other passwords) is removed and formatted again: the local stack's
        data is disposable, its topics are re-created by the stand-in.
        """
        data = self.workdir / "data"
        marker = self.workdir / "auth.json"
        want = self.auth.fingerprint() if self.auth else ""
        have = json.loads(marker.read_text()).get("fingerprint", "") if marker.exists() else ""
        if (data / "meta.properties").exists():
            if want == have:
                return
            shutil.rmtree(data)
        scram = [a for u in self.auth.super_users for a in ("--add-scram", u.format_arg())] if self.auth else []
        fmt = subprocess.run(jvm + ["kafka.tools.StorageTool", "format", "--standalone", "-t", _cluster_id(),
                                    "-c", str(config), *scram], capture_output=True, text=True)
        if fmt.returncode != 0:
            raise RuntimeError(f"formatting KRaft storage failed:\n{fmt.stdout}\n{fmt.stderr}")
        marker.write_text(json.dumps({"fingerprint": want}))

    def _ready(self) -> bool:
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient  # the runtime's client; present wherever tests run

        try:
            md = AdminClient({**self.client_config(), "log_level": 3}).list_topics(timeout=2)
            return bool(md.brokers)
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after 20 s); its data and log stay in ``workdir``."""
        if self.proc is not None:
            stop_process(self.proc, grace_s=20)
            self.proc = None
        (self.workdir / "kafka.pid").unlink(missing_ok=True)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m alertfilter_devstack.kafka start DIR | stop DIR``: run a broker in the background."""
    import argparse
    import signal

    p = argparse.ArgumentParser(prog="python -m alertfilter_devstack.kafka")
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("workdir", type=Path)
    args = p.parse_args(argv)
    if args.action == "start":
        b = KafkaBroker(args.workdir).start()
        b.proc = None  # leave it running
        print(b.bootstrap)
        return 0
    pid_file = args.workdir / "kafka.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
        pid_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
