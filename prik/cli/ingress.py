"""`prik ingress run`: the HTTP ingress for senders without a Kafka client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from broker.tenancy import TenantsFile
from contracts import ConfigError, KafkaError, codec
from deploy.credentials import read_password
from prik.bench import IngressBenchOptions, bench_ingress
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import load_settings
from producers.ingress import Credentials, Ingress, IngressServer, PublisherPool, RateLimiter

from .app import app, serve_or_fail
from .bench import bench_app

__all__ = ["bench_ingress_command", "ingress_app"]

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
    Refusals are application/problem+json: 400, 401, 403, 408, 413, 415, 429, 503.
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

    serve_or_fail(server.run(started), host, port)


# Registered on `prik bench` from here, so the benchmark's own module stays as it is.
@bench_app.command("ingress")
def bench_ingress_command(  # noqa: PLR0917  typer reads its options from the parameters
    url: Annotated[str, typer.Option("--url", help="The running ingress, without a path.")] = (
        "http://127.0.0.1:8081"
    ),
    tenant: Annotated[str, typer.Option("--as", help="The tenant to send as (a video-queue sender).")] = (
        "minlaege-video"
    ),
    password_file: Annotated[
        Path, typer.Option("--password-file", help="That tenant's password file (first line).")
    ] = Path("credentials/minlaege-video.password"),
    clinic: Annotated[str, typer.Option("--clinic", help="The recipient SOR.")] = "123456789012",
    seconds: Annotated[float, typer.Option("--seconds", min=1.0, help="How long to load it.")] = 20.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1024, help="Requests in flight.")
    ] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Requests a second and latency of a running `prik ingress run` (202 = Kafka acknowledged).

    Each of --concurrency workers posts a fresh video-queue notice as soon as the
    previous one is answered. Raise PRIK_INGRESS_RATE/BURST on the ingress first,
    or most answers are 429. Example:

        PRIK_INGRESS_RATE=100000 PRIK_INGRESS_BURST=100000 prik ingress run --credentials creds &
        prik bench ingress --password-file creds/minlaege-video.password --seconds 20
    """
    options = IngressBenchOptions(
        url=url,
        tenant=tenant,
        password=read_password(password_file),
        clinic=clinic,
        seconds=seconds,
        concurrency=concurrency,
    )
    try:
        report = run_to_end(bench_ingress(options))
    except OSError as exc:
        msg = f"the ingress at {url} does not answer: {exc.strerror or type(exc).__name__}"
        raise KafkaError(msg) from None
    if as_json:
        sys.stdout.write(codec.dumps(report).decode() + "\n")
        return
    latency = report["latency_ms"]
    typer.echo(
        f"{report['requests']} requests in {report['seconds']} s at concurrency {report['concurrency']}: "
        f"{report['requests_per_second']} requests/s ({report['accepted_per_second']} accepted/s); "
        f"latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, max {latency['max']:.1f} ms; "
        f"answers {report['statuses']}"
    )
