"""A real, single-node Apache Kafka (KRaft) run from Maven Central jars.

No Docker engine and no download site: Maven resolves the pinned broker once
into a cache folder; the JVM then runs detached from the caller, with its log
and pid in the data folder, so `prik kafka start` can return and `stop` or
`status` can find it again from another process.

Secure mode (DESIGN.md "Tenant isolation on Kafka"): every listener is
SASL_SSL, so no port a client can reach takes an unauthenticated connection
(pitfalls #18: the controller port speaks the admin protocol too).
- CLIENT: SCRAM-SHA-512; clients and the inter-broker traffic (as `broker`).
- CONTROLLER: PLAIN with one static user, `broker`: SCRAM credentials live in
  the metadata log, which a controller cannot read before its quorum runs, so
  Kafka supports only static mechanisms there.
The authorizer is StandardAuthorizer with allow.everyone.if.no.acl.found=false;
`admin` (operators) and `broker` (the nodes themselves) are the super users,
both made at format time. Once a data folder is formatted secure it never
starts otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.protocol.metadata import MetadataRequest

from contracts import ConfigError, KafkaError, codec
from prik.kafka import kafka_connection
from prik.runner import run_to_end
from prik.settings import KafkaSettings

from .credentials import new_password, read_password, write_private
from .readiness import wait_until_ready
from .tls import TlsFiles, ensure_tls

__all__ = [
    "BROKER_USER",
    "KAFKA_VERSION",
    "SCRAM_ANCHOR_USER",
    "SUPER_USER",
    "ClusterLayout",
    "KafkaStatus",
    "LocalKafka",
    "LocalKafkaCluster",
    "LocalKafkaConfig",
    "NodeStatus",
    "consecutive_free_ports",
    "default_data_dir",
    "free_port",
]

# The operators' super user, and the nodes' own principal (also a super user:
# the controller authorises forwarded admin requests as the broker that sent them).
SUPER_USER = "admin"
BROKER_USER = "broker"
SCRAM_MECHANISM: Final = "SCRAM-SHA-512"
# A SCRAM user made at format time that nobody logs in as and prik never removes.
# Kafka 4.1.2 (4.2.2 and 4.4.0 alike) loses every SCRAM credential on a restart
# that replays the metadata log from its start when the first user a Java
# HashMap iterates in that replay's changes is a removed one: ScramDelta.apply
# drops the mechanism's map as soon as a removal leaves it empty and keeps
# adding users to the dropped map. Every login is then refused (admin's too).
# This name's String.hashCode spreads to bucket 0 of any HashMap of up to
# 65,536 buckets, and it is written before any removal, so a present user
# always comes first.
SCRAM_ANCHOR_USER: Final = "prik-scram-anchor-bnty"

_KAFKA_DIR = Path(__file__).parent / "kafka"
_POM = _KAFKA_DIR / "pom.xml"
_LOG4J = _KAFKA_DIR / "log4j2.properties"
_STATE_FILE = "prik-kafka.json"


def _pinned_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", _POM.read_text())
    if match is None:  # pragma: no cover - the pom ships with the package
        msg = f"{_POM} names no kafka.version"
        raise ConfigError(msg)
    return match.group(1)


KAFKA_VERSION = _pinned_version()


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "prik" / "kafka"


def _default_lib_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prik" / f"kafka-{KAFKA_VERSION}" / "lib"


@dataclass(frozen=True, slots=True)
class LocalKafkaConfig:
    data_dir: Path
    port: int = 9092
    heap_mb: int = 512
    lib_dir: Path | None = None
    java: str | None = None
    # SASL_SSL + SCRAM + ACLs; a data folder formatted secure stays secure whatever this says.
    secure: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True, slots=True)
class KafkaStatus:
    running: bool
    bootstrap: str | None
    pid: int | None
    data_dir: Path
    secure: bool = False
    controller_port: int | None = None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def consecutive_free_ports(count: int) -> int:
    """A port P with P..P+count-1 all free on loopback right now (a cluster's client ports)."""
    for _ in range(100):
        port = free_port()
        if port + count <= 65535 and all(_port_free(port + i) for i in range(1, count)):
            return port
    msg = f"found no {count} consecutive free loopback ports"
    raise ConfigError(msg)


def _cluster_id() -> str:
    """What `StorageTool random-uuid` prints, without starting a JVM for it.

    Kafka's Uuid is 16 random bytes in URL-safe base64 without padding; it
    never hands out one that starts with "-" (it would read as an option).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _is_kafka_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline


class LocalKafka:
    """Start, stop and inspect one local broker bound to loopback."""

    def __init__(self, config: LocalKafkaConfig) -> None:
        self._config = config
        self._data_dir = config.data_dir.resolve()
        self._lib_dir = (config.lib_dir or _default_lib_dir()).resolve()
        # Kept so the child is reaped by the runner that started it.
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_file(self) -> Path:
        return self._data_dir / "logs" / "server.log"

    @property
    def admin_password_file(self) -> Path:
        return self._data_dir / f"{SUPER_USER}.password"

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_cert

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self._data_dir / "tls")

    @property
    def _broker_password_file(self) -> Path:
        return self._data_dir / f"{BROKER_USER}.password"

    def _formatted(self) -> bool:
        return (self._data_dir / "data" / "meta.properties").exists()

    @property
    def secure(self) -> bool:
        """Whether this data folder runs (or will run) in secure mode."""
        return self._config.secure or self.admin_password_file.exists()

    def client_settings(self, bootstrap: str | None = None) -> KafkaSettings:
        """How an operator (`admin`) connects: TLS against this broker's CA, SCRAM as admin."""
        address = bootstrap or self._config.bootstrap
        if not self.secure:
            return KafkaSettings(bootstrap=address)
        return KafkaSettings(
            bootstrap=address,
            security_protocol="SASL_SSL",
            sasl_mechanism=SCRAM_MECHANISM,
            username=SUPER_USER,
            password_file=self.admin_password_file,
            ca_file=self.ca_file,
        )

    # -- jars -----------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """Resolve the pinned broker into the cache once; later calls are free."""
        marker = self._lib_dir / ".complete"
        if marker.exists():
            return self._lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            msg = "mvn not found: Maven is needed once to fetch the Kafka jars (apt-get install maven)"
            raise ConfigError(msg)
        self._lib_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(_POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self._lib_dir}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
            msg = f"fetching the Kafka {KAFKA_VERSION} jars with Maven failed: {tail[0]}"
            raise KafkaError(msg, retriable=True)
        marker.touch()
        return self._lib_dir

    def _java(self) -> str:
        if self._config.java:
            return self._config.java
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").exists():
            return str(Path(java_home) / "bin" / "java")
        java = shutil.which("java")
        if java is None:
            msg = "java not found: install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)"
            raise ConfigError(msg)
        return java

    # -- state ----------------------------------------------------------------

    def _state_path(self) -> Path:
        return self._data_dir / _STATE_FILE

    def _read_state(self) -> dict[str, int] | None:
        try:
            raw = codec.loads(self._state_path().read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        return {k: int(v) for k, v in raw.items() if isinstance(v, int)}

    def status(self) -> KafkaStatus:
        state = self._read_state()
        if state and _is_kafka_process(state.get("pid", -1)):
            return KafkaStatus(
                True,
                f"127.0.0.1:{state['port']}",
                state["pid"],
                self._data_dir,
                secure=bool(state.get("secure", 0)),
                controller_port=state.get("controller_port"),
            )
        return KafkaStatus(False, None, None, self._data_dir, secure=self.secure)

    # -- start / stop -----------------------------------------------------------

    def _listener_properties(self, port: int, controller_port: int) -> dict[str, str]:
        if not self.secure:
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            }
        broker = read_password(self._broker_password_file)
        tls = self.tls
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return {
            "listeners": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "inter.broker.listener.name": "CLIENT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SASL_SSL",
            "listener.name.client.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.client.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                f'{scram} required username="{BROKER_USER}" password="{broker}";'
            ),
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            # The one account the controller knows: the nodes' own.
            "listener.name.controller.plain.sasl.jaas.config": (
                f'{plain} required username="{BROKER_USER}" password="{broker}" '
                f'user_{BROKER_USER}="{broker}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca_cert),
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{SUPER_USER};User:{BROKER_USER}",
        }

    def _node_properties(self, controller_port: int) -> dict[str, str]:
        """Who this node is in its quorum, and how far internal topics replicate: one node of its own."""
        return {
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }

    def _write_properties(self, port: int, controller_port: int) -> Path:
        data = self._data_dir / "data"
        props = {
            "process.roles": "broker,controller",
            **self._listener_properties(port, controller_port),
            "log.dirs": str(data),
            "num.partitions": "3",
            # One partition each: a first consumer group or transaction is
            # ready in milliseconds instead of waiting on 50 partitions.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            # The 4.x sample no longer sets it; the default costs 3 s per join.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            **self._node_properties(controller_port),
        }
        path = self._data_dir / "server.properties"
        # Secure mode puts the broker's own password and key password in it.
        write_private(path, "".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _controller_port(self) -> int:
        """The controller port of the last start when it is still free, else a new one.

        The quorum's voter record names the controller's endpoint, so the same
        port on every restart keeps what the metadata log says true.
        """
        path = self._data_dir / "controller.port"
        with contextlib.suppress(OSError, ValueError):
            port = int(path.read_text().strip())
            if _port_free(port):
                return port
        port = free_port()
        path.write_text(f"{port}\n")
        return port

    def _prepare_secrets(self) -> None:
        """First secure start: passwords for `admin` and `broker`, the CA and the broker's keystore."""
        for path in (self.admin_password_file, self._broker_password_file):
            if not path.exists():
                write_private(path, new_password() + "\n")
        ensure_tls(self.tls.folder)

    def _format_options(self) -> list[str]:
        # A quorum of this one controller (controller.quorum.bootstrap.servers).
        return ["--standalone"]

    def _storage_cluster_id(self) -> str:
        return _cluster_id()

    def _format(self, java: str, lib: Path, properties: Path) -> None:
        if self._formatted():
            return
        classpath = f"{lib}/*"
        arguments = [
            "format",
            *self._format_options(),
            "-t",
            self._storage_cluster_id(),
            "-c",
            str(properties),
        ]
        arguments.append("--ignore-formatted")
        # The anchor first (see SCRAM_ANCHOR_USER); its password is thrown away.
        users = (
            {
                SCRAM_ANCHOR_USER: new_password(),
                SUPER_USER: read_password(self.admin_password_file),
                BROKER_USER: read_password(self._broker_password_file),
            }
            if self.secure
            else {}
        )
        for user, password in users.items():
            arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        # StorageTool reads `@file` as more arguments, one per line: the passwords stay out of `ps`.
        args_file = self._data_dir / "format.args"
        write_private(args_file, "".join(f"{a}\n" for a in arguments))
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [java, "-cp", classpath, "kafka.tools.StorageTool", f"@{args_file}"],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            args_file.unlink(missing_ok=True)
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
            reason = lines[-1]
            # StorageTool may quote an argument it refused, passwords included.
            for password in users.values():
                reason = reason.replace(password, "***")
            msg = f"formatting Kafka storage in {self._data_dir} failed: {reason}"
            raise KafkaError(msg)

    def _refuse_mode_change(self) -> None:
        if self._config.secure and self._formatted() and not self.admin_password_file.exists():
            msg = f"{self._data_dir} holds a broker made without --secure: give --secure a new --data-dir"
            raise ConfigError(msg)

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker (or find it running) and return its bootstrap address."""
        self._refuse_mode_change()
        current = self.status()
        if current.running and current.bootstrap is not None:
            wait_until_ready(current.bootstrap, timeout, kafka=self.client_settings(current.bootstrap))
            return current.bootstrap
        process = self._launch()
        self._await_ready(process, timeout)
        return self._config.bootstrap

    def _launch(self) -> subprocess.Popen[bytes]:
        """Format the folder if new and start the JVM, without waiting for it to answer."""
        port = self._config.port
        if not _port_free(port):
            msg = f"port {port} is taken by another process: choose another with --port"
            raise ConfigError(msg)
        java = self._java()
        lib = self.ensure_jars()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        (self._data_dir / "logs").mkdir(exist_ok=True)
        controller_port = self._controller_port()
        if self.secure:
            self._prepare_secrets()
        properties = self._write_properties(port, controller_port)
        self._format(java, lib, properties)
        heap = f"{self._config.heap_mb}m"
        argv = [
            java,
            f"-Xms{min(self._config.heap_mb, 256)}m",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_LOG4J}",
            f"-Dkafka.logs.dir={self._data_dir / 'logs'}",
            "-cp",
            f"{lib}/*",
            "kafka.Kafka",
            str(properties),
        ]
        console = (self._data_dir / "logs" / "console.out").open("ab")
        with console:
            # A session of its own: Ctrl-C in the shell that ran `start` must
            # not reach the broker, which outlives the command.
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self._data_dir,
            )
        self._process = process
        self._state_path().write_bytes(
            codec.dumps(
                {
                    "pid": process.pid,
                    "port": port,
                    "controller_port": controller_port,
                    "secure": int(self.secure),
                }
            ),
        )
        return process

    def _await_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait for the node launched as `process` to answer; kill it if it does not."""
        bootstrap = self._config.bootstrap
        try:
            alive = lambda: process.poll() is None  # noqa: E731 - a one-line liveness check
            wait_until_ready(bootstrap, timeout, alive=alive, kafka=self.client_settings(bootstrap))
        except KafkaError:
            self._kill(process.pid)
            process.wait()
            self._process = None
            raise

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._state_path().unlink(missing_ok=True)

    def stop(self, timeout: float = 60.0) -> bool:
        """Shut the broker down cleanly; True if one was running. Keeps its data."""
        current = self.status()
        if not current.running or current.pid is None:
            self._state_path().unlink(missing_ok=True)
            if self._process is not None:
                # Stopped by another process (`prik kafka stop`): reap our child, or Python
                # warns "subprocess ... is still running" whenever this object is collected.
                self._process.poll()
                self._process = None
            return False
        os.kill(current.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_kafka_process(current.pid):
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(current.pid, os.WNOHANG)
            time.sleep(0.1)
        else:
            self._kill(current.pid)
        if self._process is not None:
            self._process.wait(timeout)
            self._process = None
        self._state_path().unlink(missing_ok=True)
        return True


# -- a local cluster ---------------------------------------------------------------

_CLUSTER_FILE = "prik-cluster.json"
CLUSTER_MIN_ISR: Final = 2


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """What stays fixed for a cluster's life: the static quorum names every controller's port."""

    brokers: int
    port: int
    controller_ports: tuple[int, ...]
    cluster_id: str

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.brokers))

    @property
    def voters(self) -> str:
        return ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(self.controller_ports))


class _ClusterNode(LocalKafka):
    """Node `node_id` of a local cluster: its own data folder, the cluster's quorum and secrets."""

    def __init__(self, config: LocalKafkaConfig, root: Path, layout: ClusterLayout, node_id: int) -> None:
        super().__init__(config)
        self._root = root
        self._layout = layout
        self._node_id = node_id

    @property
    def node_id(self) -> int:
        return self._node_id

    # One set of passwords and one certificate for every node: SCRAM users are
    # cluster-wide, and the certificate's 127.0.0.1 covers every loopback port.
    @property
    def admin_password_file(self) -> Path:
        return self._root / f"{SUPER_USER}.password"

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self._root / "tls")

    @property
    def _broker_password_file(self) -> Path:
        return self._root / f"{BROKER_USER}.password"

    def _controller_port(self) -> int:
        port = self._layout.controller_ports[self._node_id - 1]
        if not _port_free(port):
            msg = f"controller port {port} of node {self._node_id} is taken by another process"
            raise ConfigError(msg)
        return port

    def _node_properties(self, controller_port: int) -> dict[str, str]:
        del controller_port  # the voters list names every node's
        replication = str(min(MAX_CLUSTER_REPLICATION, self._layout.brokers))
        min_isr = str(min(CLUSTER_MIN_ISR, self._layout.brokers - 1))
        return {
            "node.id": str(self._node_id),
            "controller.quorum.voters": self._layout.voters,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            # A killed node is fenced (and leaves every ISR) after this long
            # without a heartbeat: 9 s by default, a long stall for its partitions.
            "broker.session.timeout.ms": "6000",
        }

    def _format_options(self) -> list[str]:
        # A static quorum (controller.quorum.voters) is formatted without --standalone.
        return []

    def _storage_cluster_id(self) -> str:
        return self._layout.cluster_id


MAX_CLUSTER_REPLICATION: Final = 3


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: int
    status: KafkaStatus


class LocalKafkaCluster:
    """N combined broker+controller nodes on loopback ports P..P+N-1, one folder each (`node-<i>`).

    The quorum is static (`controller.quorum.voters`, every node a voter):
    each node is formatted on its own with the same cluster id, and nothing
    has to learn another node's directory id first, as the dynamic quorum's
    `--initial-controllers` would need. A local cluster never changes its voters.
    """

    def __init__(self, config: LocalKafkaConfig, brokers: int) -> None:
        if brokers < 2:
            msg = f"a cluster has 2 or more brokers, not {brokers}"
            raise ConfigError(msg)
        self._config = config
        self._brokers = brokers
        self._root = config.data_dir.resolve()
        # The JVMs this runner started, per node id: kept so each is reaped by it.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @staticmethod
    def layout_of(data_dir: Path) -> ClusterLayout | None:
        """The layout of the cluster in `data_dir`, None where none was made."""
        try:
            raw = codec.loads((data_dir.resolve() / _CLUSTER_FILE).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        return ClusterLayout(
            int(raw["brokers"]),
            int(raw["port"]),
            tuple(int(p) for p in raw["controller_ports"]),
            str(raw["cluster_id"]),
        )

    @property
    def data_dir(self) -> Path:
        return self._root

    @property
    def admin_password_file(self) -> Path:
        return self._root / f"{SUPER_USER}.password"

    @property
    def ca_file(self) -> Path:
        return TlsFiles(self._root / "tls").ca_cert

    def _layout(self) -> ClusterLayout:
        existing = self.layout_of(self._root)
        if existing is not None:
            if existing.brokers != self._brokers:
                msg = f"{self._root} holds a cluster of {existing.brokers} brokers, not {self._brokers}"
                raise ConfigError(msg)
            return existing
        if (self._root / "data" / "meta.properties").exists():
            msg = f"{self._root} holds a single-node broker: give --brokers {self._brokers} a new --data-dir"
            raise ConfigError(msg)
        ports: set[int] = set()
        while len(ports) < self._brokers:
            port = free_port()
            if not self._config.port <= port < self._config.port + self._brokers:
                ports.add(port)
        layout = ClusterLayout(self._brokers, self._config.port, tuple(sorted(ports)), _cluster_id())
        self._root.mkdir(parents=True, exist_ok=True)
        (self._root / _CLUSTER_FILE).write_bytes(
            codec.dumps(
                {
                    "brokers": layout.brokers,
                    "port": layout.port,
                    "controller_ports": list(layout.controller_ports),
                    "cluster_id": layout.cluster_id,
                }
            )
        )
        return layout

    def nodes(self) -> list[_ClusterNode]:
        layout = self.layout_of(self._root) or self._layout()
        return [
            _ClusterNode(
                LocalKafkaConfig(
                    data_dir=self._root / f"node-{i}",
                    port=layout.port + i - 1,
                    heap_mb=self._config.heap_mb,
                    lib_dir=self._config.lib_dir,
                    java=self._config.java,
                    secure=self._config.secure or self.admin_password_file.exists(),
                ),
                self._root,
                layout,
                i,
            )
            for i in range(1, layout.brokers + 1)
        ]

    @property
    def secure(self) -> bool:
        return self._config.secure or self.admin_password_file.exists()

    @property
    def bootstrap(self) -> str:
        layout = self.layout_of(self._root)
        return (
            layout.bootstrap if layout else ClusterLayout(self._brokers, self._config.port, (), "").bootstrap
        )

    def port_of(self, node_id: int) -> int:
        """Node `node_id`'s client port (nodes count from 1)."""
        layout = self.layout_of(self._root)
        return (layout.port if layout else self._config.port) + node_id - 1

    def client_settings(self, bootstrap: str | None = None) -> KafkaSettings:
        return self.nodes()[0].client_settings(bootstrap or self.bootstrap)

    def status(self) -> list[NodeStatus]:
        if self.layout_of(self._root) is None:
            return []
        return [NodeStatus(node.node_id, node.status()) for node in self.nodes()]

    def start(self, timeout: float = 120.0) -> str:
        """Start each node that is not running, all at once (a quorum needs a majority), then wait for all."""
        self._layout()
        nodes = self.nodes()
        for node in nodes:
            node._refuse_mode_change()  # noqa: SLF001 - the cluster is the node's owner
        launched: list[tuple[_ClusterNode, subprocess.Popen[bytes]]] = []
        try:
            for node in nodes:
                if not node.status().running:
                    # A loop, not extend: on a failure the nodes launched so far are killed.
                    launched.append((node, node._launch()))  # noqa: SLF001, PERF401 - as above
            for node, process in launched:
                node._await_ready(process, timeout)  # noqa: SLF001 - as above
        except (KafkaError, ConfigError):
            for _node, process in launched:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            raise
        for node, process in launched:
            old = self._children.pop(node.node_id, None)
            if old is not None:
                old.poll()  # a node killed earlier: reap it
            self._children[node.node_id] = process
        for node in nodes:
            wait_until_ready(node.client_settings().bootstrap, timeout, kafka=node.client_settings())
        self._await_all_registered(timeout)
        return self.bootstrap

    def _await_all_registered(self, timeout: float) -> None:
        """Wait until the metadata names every node: a topic made before would get fewer replicas."""
        deadline = time.monotonic() + timeout
        settings = self.client_settings()
        while time.monotonic() < deadline:
            if run_to_end(_broker_count(settings)) >= self._brokers:
                return
            time.sleep(0.25)
        msg = (
            f"the cluster at {self.bootstrap} did not show all {self._brokers} brokers within {timeout:.0f}s"
        )
        raise KafkaError(msg, retriable=True)

    def stop(self, timeout: float = 60.0) -> int:
        """Stop every node at once (one by one, the last ones would wait on a lost quorum); how many ran."""
        if self.layout_of(self._root) is None:
            return 0  # nothing was ever made here (and stopping makes nothing)
        running = [
            (node, s.pid) for node, s in ((n, n.status()) for n in self.nodes()) if s.running and s.pid
        ]
        for _node, pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node, pid in running:
            while _is_kafka_process(pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
            if _is_kafka_process(pid):
                node._kill(pid)  # noqa: SLF001 - the cluster is the node's owner
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        for node in self.nodes():
            node._state_path().unlink(missing_ok=True)  # noqa: SLF001 - as above
        for child in self._children.values():
            child.wait(timeout)
        self._children.clear()
        return len(running)


async def _broker_count(settings: KafkaSettings) -> int:
    """How many brokers the metadata of the first node that answers names (0 if none answers)."""
    options = settings.client_options()
    options.pop("bootstrap_servers", None)
    for address in settings.bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with kafka_connection(host, int(port), options, 2.0) as conn:
                metadata = await asyncio.wait_for(conn.send(MetadataRequest([])), 2.0)
        except (AIOKafkaError, OSError, TimeoutError):
            continue
        return len(metadata.brokers)
    return 0
