"""`prik kafka start|stop|status`: the local single-node Apache Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy import KAFKA_VERSION, LocalKafka, LocalKafkaConfig, default_data_dir

from .app import app

__all__ = ["kafka_app"]

kafka_app = typer.Typer(
    help=(
        f"A local single-node Apache Kafka {KAFKA_VERSION} (KRaft) from Maven Central jars; "
        "no Docker needed. Java 17+ runs it; Maven fetches the jars once."
    ),
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder for the broker's data, logs and pid (kept on stop)."),
]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="Loopback port of the client listener.")]


def _runner(data_dir: Path | None, port: int = 9092, *, secure: bool = False) -> LocalKafka:
    return LocalKafka(LocalKafkaConfig(data_dir=data_dir or default_data_dir(), port=port, secure=secure))


def _secure_line(runner: LocalKafka) -> str:
    return (
        f"secure: SASL_SSL with SCRAM-SHA-512, CA {runner.ca_file}, "
        f"super user admin (password in {runner.admin_password_file})"
    )


@kafka_app.command("start")
def start(
    data_dir: DataDir = None,
    port: Port = 9092,
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
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to answer.")] = 90.0,
) -> None:
    """Start the broker (or find it running) and print its bootstrap address.

    With --secure, how to connect goes to stderr, as the settings an operator exports:

        prik kafka start --secure --data-dir /tmp/k --port 19092
    """
    runner = _runner(data_dir, port, secure=secure)
    already = runner.status().running
    bootstrap = runner.start(timeout=timeout)
    if already:
        typer.echo(f"already running (data in {runner.data_dir})", err=True)
    if runner.secure:
        typer.echo(_secure_line(runner), err=True)
        settings = runner.client_settings(bootstrap)
        typer.echo(
            f"  PRIK_KAFKA__BOOTSTRAP={bootstrap} PRIK_KAFKA__SECURITY_PROTOCOL={settings.security_protocol} "
            f"PRIK_KAFKA__CA_FILE={settings.ca_file} PRIK_KAFKA__USERNAME={settings.username} "
            f"PRIK_KAFKA__PASSWORD_FILE={settings.password_file}",
            err=True,
        )
    typer.echo(bootstrap)


@kafka_app.command("stop")
def stop(data_dir: DataDir = None) -> None:
    """Stop the broker cleanly. Its data stays in the data folder."""
    runner = _runner(data_dir)
    if runner.stop():
        typer.echo(f"stopped (data kept in {runner.data_dir})")
    else:
        typer.echo("not running")


@kafka_app.command("status")
def status(data_dir: DataDir = None) -> None:
    """Print the bootstrap address and exit 0 while the broker runs; exit 1 otherwise."""
    runner = _runner(data_dir)
    current = runner.status()
    if not current.running:
        typer.echo("not running")
        raise typer.Exit(1)
    mode = _secure_line(runner) if current.secure else "PLAINTEXT, no authentication"
    typer.echo(f"{current.bootstrap} (pid {current.pid}, data in {current.data_dir}; {mode})")
