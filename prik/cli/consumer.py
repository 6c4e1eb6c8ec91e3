"""`prik consumer run`: the clinic-side runtime an LPS vendor runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consumers import (
    ClinicConsumer,
    Deliverer,
    PrintDeliverer,
    WebhookDeliverer,
    WebhookSecrets,
    check_secret,
    check_webhook_url,
)
from consumers.signing import SECRET_PREFIX
from contracts import ConfigError
from prik.logs import configure_logging, get_logger
from prik.runner import run_to_end
from prik.settings import Settings, load_settings

from .app import app, fail
from .send import parse_duration

__all__ = ["consumer_app", "parse_seconds"]

consumer_app = typer.Typer(
    help="The clinic-side consumer: deliver an LPS's messages, retry, receipt, answer tasks.",
    no_args_is_help=True,
)
app.add_typer(consumer_app, name="consumer")

_log = get_logger("prik.consumers")


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


def _file_secrets(path: Path) -> list[tuple[str, str]]:
    """(label, secret) for each line of `path` that is neither blank nor a `#` comment."""
    name = str(path)
    # A secret passed where its file belongs must not be echoed back in the error,
    # and a name with control characters must not break the error's one line.
    shown = "(a secret, not a file name?)" if SECRET_PREFIX in name else name
    shown = shown if shown.isprintable() else ascii(shown)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"--secret-file {shown} cannot be read: {exc.strerror or type(exc).__name__}"
        raise ConfigError(msg) from None
    except UnicodeDecodeError:
        msg = f"--secret-file {shown} is not UTF-8 text"
        raise ConfigError(msg) from None
    found = [
        (f"--secret-file {shown} line {number}", line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not found:
        msg = f"--secret-file {shown} holds no secret (one whsec_... per line)"
        raise ConfigError(msg)
    return found


def _secrets(
    argv: list[str], legacy: str | None, secret_file: Path | None, settings: Settings
) -> WebhookSecrets | None:
    """Every active secret, from all sources together; None when none is given.

    A malformed one is a ConfigError naming where it came from, never what it is.
    """
    given = [(f"--secret #{n}", secret) for n, secret in enumerate(argv, start=1)]
    if legacy is not None:
        given.append(("PRIK_WEBHOOK_SECRET", legacy))
    given += [
        (f"PRIK_WEBHOOK_SECRETS item {n}", secret.get_secret_value())
        for n, secret in enumerate(settings.webhook_secrets, start=1)
    ]
    if secret_file is not None:
        given += _file_secrets(secret_file)
    for label, secret in given:
        try:
            check_secret(secret)
        except ConfigError as exc:
            msg = f"{label}: {exc}"
            raise ConfigError(msg) from None
    return WebhookSecrets(secret for _, secret in given) if given else None


def _deliverer(webhook: str | None, secrets: WebhookSecrets | None, print_: bool) -> Deliverer:
    if (webhook is None) == (not print_):
        msg = "give exactly one of --webhook URL or --print"
        raise ConfigError(msg)
    if print_:
        return PrintDeliverer()
    assert webhook is not None  # noqa: S101  checked just above
    check_webhook_url(webhook)
    if secrets is None:
        msg = "--webhook needs a secret: --secret-file FILE, PRIK_WEBHOOK_SECRETS or --secret whsec_..."
        raise ConfigError(msg)
    return WebhookDeliverer(webhook, secrets)


@consumer_app.command("run")
def run(  # noqa: PLR0917  typer reads its options from the parameters
    lps: Annotated[str, typer.Option("--lps", help="The LPS tenant id whose delivery topic to consume.")],
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="Deliver by signed POST (Standard Webhooks) to this URL.")
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help=(
                "A whsec_... secret that signs webhooks and authenticates POST /tasks/{id}/status; "
                "repeat it while rotating. Visible in `ps`: prefer --secret-file or PRIK_WEBHOOK_SECRETS."
            ),
        ),
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file",
            help="A file (mode 0600, say) with one whsec_... per line; blank and # lines are skipped.",
        ),
    ] = None,
    legacy_secret: Annotated[
        str | None,
        # The older single-secret variable, still honoured: one more active secret.
        typer.Option("--legacy-webhook-secret", envvar="PRIK_WEBHOOK_SECRET", hidden=True),
    ] = None,
    print_: Annotated[bool, typer.Option("--print", help="Print one line per message instead.")] = False,
    http_port: Annotated[
        int,
        typer.Option(
            "--http-port",
            min=0,
            max=65535,
            help="Port of /health, /metrics (Prometheus) and /tasks/{id}/status (0: any).",
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
    (replayable) and /health reports it until the consumer is restarted.

    Every secret given is active, from all of --secret, --secret-file and
    PRIK_WEBHOOK_SECRETS together: each webhook carries one signature per secret,
    and a task answer signed with any of them is accepted. To rotate, add the new
    secret, let the LPS switch, then remove the old one. The webhook URL must be
    https:// (http:// only to loopback). Example:

        prik consumer run --lps lps-xmo --webhook https://lps.example/prik --secret-file /etc/prik/xmo.secrets
    """
    try:
        settings = load_settings()
        secrets = _secrets(secret or [], legacy_secret, secret_file, settings)
        deliverer = _deliverer(webhook, secrets, print_)
        retry_seconds = parse_seconds(max_retry_time)
    except ConfigError as exc:
        fail(str(exc), 2)
    configure_logging(settings.log_level)
    if secrets is not None:
        # How many, never which: enough to see a rotation take effect.
        _log.info("webhook secrets active", count=len(secrets))
    if secret:
        _log.warning("--secret is visible to other local users in ps; prefer --secret-file")

    async def _main() -> None:
        consumer = ClinicConsumer(
            settings.kafka,
            settings.topics,
            lps,
            deliverer,
            max_retry_time=retry_seconds,
            http_port=http_port,
            http_host=http_host,
            task_secret=secrets,
        )
        # start() logs the bound HTTP port (`consumer started ... http_port=`).
        await consumer.run()

    run_to_end(_main())
