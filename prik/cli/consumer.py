"""`prik consumer run`: the clinic-side runtime an LPS vendor runs."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from consumers import ClinicConsumer, Deliverer, PrintDeliverer, WebhookDeliverer, make_webhook
from contracts import ConfigError
from prik.logs import configure_logging
from prik.settings import load_settings

from .app import app, fail
from .send import parse_duration

__all__ = ["consumer_app", "parse_seconds"]

consumer_app = typer.Typer(
    help="The clinic-side consumer: deliver an LPS's messages, retry, receipt, answer tasks.",
    no_args_is_help=True,
)
app.add_typer(consumer_app, name="consumer")


def parse_seconds(text: str) -> float:
    """A duration such as `90s`, `15m`, `1h`, or a plain number of seconds."""
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        return parse_duration(stripped).total_seconds()
    if seconds <= 0:
        msg = f"{text!r} is not a positive duration"
        raise ConfigError(msg)
    return seconds


def _deliverer(webhook: str | None, secret: str | None, print_: bool) -> Deliverer:
    if (webhook is None) == (not print_):
        msg = "give exactly one of --webhook URL or --print"
        raise ConfigError(msg)
    if print_:
        return PrintDeliverer()
    assert webhook is not None  # noqa: S101  checked just above
    if not webhook.startswith(("http://", "https://")):
        msg = "--webhook must be an http:// or https:// URL"
        raise ConfigError(msg)
    if secret is None:
        msg = "--webhook needs --secret whsec_..."
        raise ConfigError(msg)
    make_webhook(secret)  # a malformed secret is a usage error now, not a failure later
    return WebhookDeliverer(webhook, secret)


@consumer_app.command("run")
def run(  # noqa: PLR0917  typer reads its options from the parameters
    lps: Annotated[str, typer.Option("--lps", help="The LPS tenant id whose delivery topic to consume.")],
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="Deliver by signed POST (Standard Webhooks) to this URL.")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="PRIK_WEBHOOK_SECRET",
            help="The whsec_... secret that signs webhooks and authenticates POST /tasks/{id}/status.",
        ),
    ] = None,
    print_: Annotated[bool, typer.Option("--print", help="Print one line per message instead.")] = False,
    http_port: Annotated[
        int,
        typer.Option(
            "--http-port", min=0, max=65535, help="Port of /health and /tasks/{id}/status (0: any)."
        ),
    ] = 0,
    http_host: Annotated[
        str, typer.Option("--http-host", help="Address the HTTP server binds.")
    ] = "127.0.0.1",
    max_retry_time: Annotated[
        str, typer.Option("--max-retry-time", help="Give up and dead-letter after this long, e.g. 1h, 90s.")
    ] = "1h",
) -> None:
    """Deliver the LPS's messages until SIGINT/SIGTERM, then stop gracefully.

    On a signal it stops fetching, lets deliveries in flight finish (briefly),
    commits what is final and leaves its group, each step bounded even while
    Kafka is down; a second signal stops at once. Anything unfinished is delivered
    again later with the same webhook-id. If the webhook answers 410 Gone, the
    endpoint is disabled: nothing more is POSTed, messages are dead-lettered
    (replayable) and /health reports it until the consumer is restarted. Example:

        prik consumer run --lps lps-xmo --webhook http://127.0.0.1:8080/webhook --secret whsec_...
    """
    try:
        deliverer = _deliverer(webhook, secret, print_)
        retry_seconds = parse_seconds(max_retry_time)
    except ConfigError as exc:
        fail(str(exc), 2)
    settings = load_settings()
    configure_logging(settings.log_level)

    async def _main() -> None:
        consumer = ClinicConsumer(
            settings.kafka,
            settings.topics,
            lps,
            deliverer,
            max_retry_time=retry_seconds,
            http_port=http_port,
            http_host=http_host,
            task_secret=secret,
        )
        # start() logs the bound HTTP port (`consumer started ... http_port=`).
        await consumer.run()

    asyncio.run(_main())
