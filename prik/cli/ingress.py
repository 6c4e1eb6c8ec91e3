"""`prik ingress run`: the HTTP ingress for senders without a Kafka client."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from broker.tenancy import TenantsFile
from contracts import ConfigError
from prik.logs import configure_logging
from prik.settings import load_settings
from producers.ingress import Credentials, Ingress, IngressServer, PublisherPool, RateLimiter

from .app import app, fail

__all__ = ["ingress_app"]

ingress_app = typer.Typer(help="The HTTP ingress for senders without a Kafka client.", no_args_is_help=True)
app.add_typer(ingress_app, name="ingress")


@ingress_app.command("run")
def run(
    credentials: Annotated[
        Path | None,
        typer.Option(
            "--credentials",
            help="Folder of DIR/<tenant>.password files (`prik topics apply --credentials DIR` keeps "
            "them in secure mode); required: the ingress has no unauthenticated mode.",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free).")] = 8081,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; TLS belongs to a reverse proxy in front.")
    ] = "127.0.0.1",
    tenants: Annotated[
        Path | None, typer.Option("--tenants", help="Tenants TOML file (default: $PRIK_TENANTS).")
    ] = None,
) -> None:
    """Serve POST /v1/messages (CloudEvents over HTTP) until SIGINT/SIGTERM.

    A sender logs in with HTTP Basic: its tenant id and the password in
    DIR/<id>.password. Each message gets the router's own validation and
    authorisation, then is published on the tenant's ingress topic; the answer
    (202 with id, topic, partition, offset) comes once Kafka acknowledged it.
    Refusals are application/problem+json: 400, 401, 403, 413, 415, 429.
    GET /openapi.json describes it all; GET /health. Each tenant may send
    PRIK_INGRESS_RATE messages a second (burst PRIK_INGRESS_BURST). Example:

        PRIK_TENANTS=deploy/tenants.example.toml prik ingress run --credentials ./credentials
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    if credentials is None:
        msg = (
            "pass --credentials DIR, the folder of DIR/<tenant>.password files: "
            "the ingress never accepts a sender it cannot authenticate"
        )
        raise ConfigError(msg)
    path = tenants or settings.tenants
    if path is None:
        msg = "no tenants file: set PRIK_TENANTS or pass --tenants"
        raise ConfigError(msg)
    parties = TenantsFile(path)
    logins = Credentials(credentials, parties)
    ingress = Ingress(
        tenants=parties,
        auth=logins,
        sender=PublisherPool(settings.kafka, settings.topics, logins.password),
        limiter=RateLimiter(settings.ingress_rate, settings.ingress_burst),
        max_bytes=settings.max_message_bytes,
    )
    server = IngressServer(ingress, host=host, port=port)

    def started(url: str) -> None:
        typer.echo(f"ingress at {url}/v1/messages (OpenAPI at {url}/openapi.json; Ctrl-C stops)")

    try:
        asyncio.run(server.run(started))
    except OSError as exc:
        reason = (
            os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or type(exc).__name__)
        )
        fail(f"cannot listen on {host}:{port}: {reason}", 2)
