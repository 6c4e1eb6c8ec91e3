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

from contracts import ConfigError, KafkaError, codec
from prik.settings import KafkaSettings

from .credentials import new_password, read_password, write_private
from .readiness import wait_until_ready
from .tls import TlsFiles, ensure_tls

__all__ = [
    "BROKER_USER",
    "KAFKA_VERSION",
    "SUPER_USER",
    "KafkaStatus",
    "LocalKafka",
    "LocalKafkaConfig",
    "default_data_dir",
    "free_port",
]

# The operators' super user, and the nodes' own principal (also a super user:
# the controller authorises forwarded admin requests as the broker that sent them).
SUPER_USER = "admin"
BROKER_USER = "broker"
SCRAM_MECHANISM: Final = "SCRAM-SHA-512"

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

    def _write_properties(self, port: int, controller_port: int) -> Path:
        data = self._data_dir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
            **self._listener_properties(port, controller_port),
            "log.dirs": str(data),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            # One partition each: a first consumer group or transaction is
            # ready in milliseconds instead of waiting on 50 partitions.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # The 4.x sample no longer sets it; the default costs 3 s per join.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
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

    def _format(self, java: str, lib: Path, properties: Path) -> None:
        if self._formatted():
            return
        classpath = f"{lib}/*"
        cluster_id = _cluster_id()
        arguments = ["format", "--standalone", "-t", cluster_id, "-c", str(properties), "--ignore-formatted"]
        for user, path in ((SUPER_USER, self.admin_password_file), (BROKER_USER, self._broker_password_file)):
            if self.secure:
                credential = f"{SCRAM_MECHANISM}=[name={user},password={read_password(path)}]"
                arguments += ["--add-scram", credential]
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
            for path in (self.admin_password_file, self._broker_password_file):
                if self.secure:
                    reason = reason.replace(read_password(path), "***")
            msg = f"formatting Kafka storage in {self._data_dir} failed: {reason}"
            raise KafkaError(msg)

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker (or find it running) and return its bootstrap address."""
        if self._config.secure and self._formatted() and not self.admin_password_file.exists():
            msg = f"{self._data_dir} holds a broker made without --secure: give --secure a new --data-dir"
            raise ConfigError(msg)
        current = self.status()
        if current.running and current.bootstrap is not None:
            wait_until_ready(current.bootstrap, timeout, kafka=self.client_settings(current.bootstrap))
            return current.bootstrap
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
        bootstrap = self._config.bootstrap
        try:
            alive = lambda: process.poll() is None  # noqa: E731 - a one-line liveness check
            wait_until_ready(bootstrap, timeout, alive=alive, kafka=self.client_settings(bootstrap))
        except KafkaError:
            self._kill(process.pid)
            process.wait()
            self._process = None
            raise
        return bootstrap

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._state_path().unlink(missing_ok=True)

    def stop(self, timeout: float = 60.0) -> bool:
        """Shut the broker down cleanly; True if one was running. Keeps its data."""
        current = self.status()
        if not current.running or current.pid is None:
            self._state_path().unlink(missing_ok=True)
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
