"""`prik kafka start|stop|status`: a local Apache Kafka, one node or a cluster of N."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contracts import ConfigError
from deploy import KAFKA_VERSION, LocalKafka, LocalKafkaConfig, default_data_dir
from deploy.local_kafka import LocalKafkaCluster

from .app import app

__all__ = ["kafka_app"]

kafka_app = typer.Typer(
    help=(
        f"A local Apache Kafka {KAFKA_VERSION} (KRaft) from Maven Central jars, one node or a cluster "
        "(--brokers N); no Docker needed. Java 17+ runs it; Maven fetches the jars once."
    ),
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder for the broker's data, logs and pid (kept on stop)."),
]
Port = Annotated[
    int | None,
    typer.Option(
        "--port",
        min=1,
        max=65535,
        help="Loopback port of the client listener, 9092 by default (node i of a cluster: P+i-1).",
    ),
]
DEFAULT_PORT = 9092
# A cluster's JVMs share two cores and the tests' memory with everything else.
CLUSTER_HEAP_MB = 384


def _cluster(
    data_dir: Path | None, brokers: int | None, port: int | None = None, *, secure: bool = False
) -> LocalKafkaCluster | None:
    """The cluster in `data_dir` (or the one `--brokers N` makes there); None for a single node."""
    folder = data_dir or default_data_dir()
    layout = LocalKafkaCluster.layout_of(folder)
    if layout is not None:
        if port is not None and port != layout.port:
            # The static quorum and every client's bootstrap list name the ports it was made with.
            last = layout.port + layout.brokers - 1
            msg = f"{folder} holds a cluster on ports {layout.port}-{last}: --port {layout.port}"
            raise ConfigError(msg)
        brokers = brokers or layout.brokers
        port = layout.port
    if not brokers or brokers == 1:
        if layout is not None:
            msg = f"{folder} holds a cluster of {layout.brokers} brokers, not 1"
            raise ConfigError(msg)
        return None
    config = LocalKafkaConfig(
        data_dir=folder, port=port or DEFAULT_PORT, secure=secure, heap_mb=CLUSTER_HEAP_MB
    )
    return LocalKafkaCluster(config, brokers)


def _runner(data_dir: Path | None, port: int | None = None, *, secure: bool = False) -> LocalKafka:
    folder = data_dir or default_data_dir()
    return LocalKafka(LocalKafkaConfig(data_dir=folder, port=port or DEFAULT_PORT, secure=secure))


def _secure_line(runner: LocalKafka | LocalKafkaCluster) -> str:
    return (
        f"secure: SASL_SSL with SCRAM-SHA-512, CA {runner.ca_file}, "
        f"super user admin (password in {runner.admin_password_file})"
    )


@kafka_app.command("start")
def start(
    data_dir: DataDir = None,
    port: Port = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help=(
                "SASL_SSL with SCRAM-SHA-512 and ACLs (StandardAuthorizer, nothing allowed without an ACL). "
                "TLS material in DATA_DIR/tls (clients trust tls/ca.pem); super user admin, its password "
                "in DATA_DIR/admin.password. A data folder made secure always starts secure."
            ),
        ),
    ] = False,
    brokers: Annotated[
        int | None,
        typer.Option(
            "--brokers",
            min=1,
            max=9,
            help=(
                "Nodes, each broker and controller of a static quorum, on ports P..P+N-1 with a folder "
                "DATA_DIR/node-<i> each (default 1, or what DATA_DIR holds). Starting a cluster "
                "brings back any node that is down."
            ),
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to answer.")] = 90.0,
) -> None:
    """Start the broker (or find it running) and print its bootstrap address.

    With --secure, how to connect goes to stderr, as the settings an operator exports:

        prik kafka start --secure --data-dir /tmp/k --port 19092

    Three nodes on ports 19100-19102 (prints the bootstrap list); again later, it
    brings back a node that is down:

        prik kafka start --brokers 3 --data-dir /tmp/k3 --port 19100
    """
    cluster = _cluster(data_dir, brokers, port, secure=secure)
    if cluster is not None:
        _start_cluster(cluster, timeout)
        return
    runner = _runner(data_dir, port, secure=secure)
    already = runner.status().running
    bootstrap = runner.start(timeout=timeout)
    if already:
        typer.echo(f"already running (data in {runner.data_dir})", err=True)
    _connect_lines(runner, bootstrap)
    typer.echo(bootstrap)


def _connect_lines(runner: LocalKafka | LocalKafkaCluster, bootstrap: str) -> None:
    if runner.secure:
        typer.echo(_secure_line(runner), err=True)
        settings = runner.client_settings(bootstrap)
        typer.echo(
            f"  PRIK_KAFKA__BOOTSTRAP={bootstrap} PRIK_KAFKA__SECURITY_PROTOCOL={settings.security_protocol} "
            f"PRIK_KAFKA__CA_FILE={settings.ca_file} PRIK_KAFKA__USERNAME={settings.username} "
            f"PRIK_KAFKA__PASSWORD_FILE={settings.password_file}",
            err=True,
        )


def _start_cluster(cluster: LocalKafkaCluster, timeout: float) -> None:
    before = cluster.status()  # empty before the first start
    down = [n.node_id for n in before if not n.status.running]
    bootstrap = cluster.start(timeout=timeout)
    if before and not down:
        typer.echo(f"already running (data in {cluster.data_dir})", err=True)
    elif down and len(down) < len(before):
        typer.echo(f"started node {', '.join(map(str, down))} again", err=True)
    _connect_lines(cluster, bootstrap)
    typer.echo(bootstrap)


@kafka_app.command("stop")
def stop(data_dir: DataDir = None) -> None:
    """Stop the broker, or every node of a cluster, cleanly. Its data stays in the data folder."""
    cluster = _cluster(data_dir, None)
    if cluster is not None:
        stopped = cluster.stop()
        typer.echo(
            f"stopped {stopped} node(s) (data kept in {cluster.data_dir})" if stopped else "not running"
        )
        return
    runner = _runner(data_dir)
    if runner.stop():
        typer.echo(f"stopped (data kept in {runner.data_dir})")
    else:
        typer.echo("not running")


@kafka_app.command("status")
def status(data_dir: DataDir = None) -> None:
    """Print the bootstrap address and exit 0 while the broker runs; exit 1 otherwise.

    A cluster: one line per node, then the bootstrap list; exit 0 only while every node runs.
    """
    cluster = _cluster(data_dir, None)
    if cluster is not None:
        _cluster_status(cluster)
        return
    runner = _runner(data_dir)
    current = runner.status()
    if not current.running:
        typer.echo("not running")
        raise typer.Exit(1)
    mode = _secure_line(runner) if current.secure else "PLAINTEXT, no authentication"
    typer.echo(f"{current.bootstrap} (pid {current.pid}, data in {current.data_dir}; {mode})")


def _cluster_status(cluster: LocalKafkaCluster) -> None:
    nodes = cluster.status()
    mode = _secure_line(cluster) if cluster.secure else "PLAINTEXT, no authentication"
    for node in nodes:
        state = node.status
        address = f"127.0.0.1:{cluster.port_of(node.node_id)}"
        where = f"data in {state.data_dir}"
        line = f"running (pid {state.pid}, {where})" if state.running else f"not running ({where})"
        typer.echo(f"node {node.node_id} {address}: {line}")
    typer.echo(f"{cluster.bootstrap} ({mode})")
    if not all(n.status.running for n in nodes):
        raise typer.Exit(1)
