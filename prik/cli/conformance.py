"""`prik conformance`: certify an LPS webhook endpoint against DESIGN.md "Webhook delivery", without Kafka."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from consumers import WebhookSecrets, check_webhook_url
from contracts import ConfigError, Sor, dumps
from contracts.examples import EXAMPLE_CLINIC_SOR
from prik.conformance import ConformanceRunner, Report, Result, TaskApiStandIn, parse_task_api
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import Settings, load_settings

from .app import app, fail
from .consumer import _secrets as gather_secrets  # the consumer's own rules for where secrets come from

__all__ = ["conformance_command", "report_table"]

_SOR = TypeAdapter(Sor)
_STYLE = {Result.PASS: "green", Result.FAIL: "bold red", Result.SKIP: "yellow"}


def report_table(report: Report) -> Table:
    """One row per scenario: its name, PASS/FAIL/SKIP and the reason."""
    counts = ", ".join(f"{report.count(result)} {result.value}" for result in Result)
    table = Table(
        title=Text(f"prik conformance: {report.url}"),
        caption=f"{counts} in {report.seconds:.2f} s (timeout {report.timeout:g} s per request)",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("scenario", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("reason")
    for outcome in report.outcomes:
        style = _STYLE[outcome.result]
        # Reasons and the URL as Text: never read as rich markup or emoji codes ("[fe80::1]", "[/]", ":a:").
        table.add_row(Text(outcome.name), f"[{style}]{outcome.result.value.upper()}[/]", Text(outcome.reason))
    return table


def _check_clinic(clinic: str) -> str:
    try:
        return _SOR.validate_python(clinic)
    except ValidationError:
        msg = "--clinic must be a SOR code (11-18 digits)"
        raise ConfigError(msg) from None


def _endpoint_secrets(argv: list[str], secret_file: Path | None, settings: Settings) -> WebhookSecrets:
    secrets = gather_secrets(argv, None, secret_file, settings)
    if secrets is None:
        msg = "give the endpoint's secret: --secret-file FILE, PRIK_WEBHOOK_SECRETS or --secret whsec_..."
        raise ConfigError(msg)
    return secrets


def _check_junit(path: Path | None) -> None:
    if path is not None and not path.parent.is_dir():
        msg = f"--junit {path}: its folder does not exist"
        raise ConfigError(msg)


async def _certify(
    make: Callable[[TaskApiStandIn | None], ConformanceRunner], task_api: str | None, secrets: WebhookSecrets
) -> Report:
    stand_in = None
    if task_api is not None:
        host, port = parse_task_api(task_api)
        stand_in = TaskApiStandIn(host, port, secrets)
        try:
            await stand_in.start()
        except OSError as exc:
            msg = f"--task-api {host}:{port}: cannot listen there ({exc.strerror or type(exc).__name__})"
            raise ConfigError(msg) from None
    try:
        return await make(stand_in).run()
    finally:
        if stand_in is not None:
            await stand_in.stop()


@app.command("conformance")
def conformance_command(  # noqa: PLR0917  typer reads its options from the parameters
    url: Annotated[
        str, typer.Option("--url", help="The LPS webhook endpoint (https://, or http:// to loopback).")
    ],
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="The endpoint's whsec_... secret (repeat while rotating). Visible in `ps`: "
            "prefer --secret-file or PRIK_WEBHOOK_SECRETS.",
        ),
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option("--secret-file", help="A file with one whsec_... per line.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout instead of the table.")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write JUnit XML here, for a CI.", dir_okay=False)
    ] = None,
    task_api: Annotated[
        str | None,
        typer.Option(
            "--task-api",
            help="http://HOST:PORT where this run listens for the LPS's task answers "
            "(POST /tasks/{id}/status, as to the consumer); checks the task round trip.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, max=300.0, help="Seconds each request may take (prik: 15).")
    ] = 15.0,
    task_wait: Annotated[
        float, typer.Option("--task-wait", min=0.1, max=600.0, help="Seconds to wait for the task answer.")
    ] = 30.0,
    max_time: Annotated[
        float, typer.Option("--max-time", min=1.0, max=3600.0, help="Seconds the whole run may take.")
    ] = 300.0,
    clinic: Annotated[
        str, typer.Option("--clinic", help="The SOR code of the test clinic the messages are addressed to.")
    ] = EXAMPLE_CLINIC_SOR,
) -> None:
    """Certify an LPS webhook endpoint against every rule of "Webhook delivery", without Kafka.

    Sends real, signed prik messages of every type an LPS receives, and checks
    scenario by scenario: valid deliveries answered 2xx within --timeout; bad,
    missing, tampered and stale (or future) signatures refused with 4xx; a repeated
    webhook-id answered 2xx again; unknown attributes and fields tolerated; 410 and
    429 + Retry-After understood where used; with --task-api, the task answer round
    trip. Exit 0 only when every scenario passes, 1 when one fails, 2 on a usage error.

        prik conformance --url https://lps.example/prik --secret-file lps.secrets
        prik conformance --url http://127.0.0.1:8091/webhook --secret-file lps.secrets \\
            --task-api http://127.0.0.1:8092 --json --junit conformance.xml
    """
    try:
        settings = load_settings()
        check_webhook_url(url)
        secrets = _endpoint_secrets(secret or [], secret_file, settings)
        if task_api is not None:
            parse_task_api(task_api)
        _check_junit(junit)
        sor = _check_clinic(clinic)
    except ConfigError as exc:
        fail(str(exc), 2)
    configure_logging(settings.log_level)

    def make(stand_in: TaskApiStandIn | None) -> ConformanceRunner:
        return ConformanceRunner(
            url,
            secrets,
            clinic=sor,
            timeout=timeout,
            max_time=max_time,
            task_api=stand_in,
            task_api_url=task_api,
            task_wait=task_wait,
        )

    try:
        report = run_to_end(_certify(make, task_api, secrets))
    except ConfigError as exc:
        fail(str(exc), 2)
    if junit is not None:
        try:
            junit.write_bytes(report.to_junit())
        except OSError as exc:
            fail(f"--junit {junit}: cannot write ({exc.strerror or type(exc).__name__})", 2)
    if as_json:
        sys.stdout.write(dumps(report.to_json(), indent=True).decode() + "\n")
    else:
        console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
        console.print(report_table(report))
    if not report.passed:
        failed = report.failed()
        fail(f"{len(failed)} of {len(report.outcomes)} scenarios failed: {', '.join(failed)}", 1)
