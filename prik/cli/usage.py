"""`prik usage`: who caused how much load, per sender and per LPS, read from Kafka itself."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contracts import ConfigError, dumps
from prik.accounting import Usage, usage
from prik.accounting.reading import Progress as OnProgress
from prik.accounting.view import usage_table
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import load_settings
from prik.tenants import tenants_from_settings

from .app import app
from .send import parse_when

__all__ = ["parse_since", "usage_command"]


def parse_since(text: str, now: datetime) -> datetime:
    """`24h`, `15m`, `90s`, `7d`, `1h30m` back from `now`, or an RFC 3339 time with its zone."""
    when = parse_when(text, base=now, later=False)
    if when is None:
        msg = (
            f"--since {text!r} is neither a duration (90s, 15m, 24h, 7d) "
            "nor an RFC 3339 time with zone (2026-11-26T09:00:00Z)"
        )
        raise ConfigError(msg)
    if when > now:
        msg = f"--since {text!r} lies in the future"
        raise ConfigError(msg)
    return when.astimezone(UTC)


@contextlib.contextmanager
def _progress_on_stderr() -> Iterator[OnProgress | None]:
    """A progress bar on stderr while the read goes on (a terminal only); gone once it is done."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("reading ingress and replies topics"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("read", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _warn(result: Usage) -> None:
    missing = result.missing_topics
    if missing:
        # One line: a wrong PRIK_TOPIC_PREFIX misses every topic at once.
        names = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        sys.stderr.write(f"prik: warning: {len(missing)} topic(s) do not exist, counted as empty: {names}\n")


@app.command("usage")
def usage_command(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Start of the window: a duration back from now (90s, 15m, 24h, 7d, 1h30m) "
            "or an RFC 3339 time (2026-11-26T09:00:00Z). The window ends now.",
        ),
    ] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (DESIGN.md).")] = False,
    tenants: Annotated[
        Path | None, typer.Option("--tenants", help="Tenants TOML file (default: $PRIK_TENANTS).")
    ] = None,
) -> None:
    """Who caused how much load: per sender and per LPS, and the peak minute, read from Kafka.

    Senders: per tenant (every one of the tenants file), the records on its
    ingress topic in the window, their bytes, and how its messages ended
    (delivered, expired, rejected, dead-lettered: the receipts on its replies
    topic, each message counted once). Receivers: per LPS, what it delivered and
    dead-lettered, and to how many clinics. Peak: the busiest minute of all
    ingress traffic and who sent most in it. Read from Kafka itself (only the
    window, from offsets_for_times), so it is right after any restart and while
    the router is down. Kafka keeps the ingress and replies topics a week
    (`prik topics apply`): a longer window counts what is left. A table, or JSON
    with --json; progress goes to stderr.

        prik usage                 # the last 24 hours
        prik usage --since 15m --json
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    start = parse_since(since, datetime.now(UTC))
    parties = tenants_from_settings(settings, tenants)
    with _progress_on_stderr() as progress:
        result = run_to_end(
            usage(
                settings.kafka,
                settings.topics,
                parties,
                start,
                max_message_bytes=settings.max_message_bytes,
                progress=progress,
            )
        )
    _warn(result)
    if as_json:
        sys.stdout.write(dumps(result.to_json(), indent=True).decode() + "\n")
        return
    # Wide enough for the tables when stdout is a file or a pipe, not a terminal.
    console = Console(width=None if sys.stdout.isatty() else 150, highlight=False)
    console.print(usage_table(result, heading=f"prik usage ({settings.topic_prefix}.*)"))
