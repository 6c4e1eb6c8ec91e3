"""The root `prik` command: sub-commands register here; errors become one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import typer

from contracts import ConfigError, PrikError
from prik.runner import run_to_end

__all__ = ["app", "fail", "main", "serve_or_fail"]

app = typer.Typer(
    name="prik",
    help=(
        "prik: a tap on the shoulder for Danish general practice.\n\n"
        "Senders publish CloudEvents onto Apache Kafka; the router validates, authorises "
        "and routes them; clinic-side consumers deliver them to the practice system (LPS).\n\n"
        "Exit codes: 0 success, 1 the work failed, 2 usage or configuration error."
    ),
    no_args_is_help=True,
    add_completion=False,
    # One clear line instead of a traceback: errors are handled in main().
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error line to stderr and exit."""
    sys.stderr.write(f"prik: error: {message}\n")
    raise typer.Exit(code)


def serve_or_fail(server: Coroutine[Any, Any, None], host: str, port: int) -> None:
    """Run a server until it stops; an address it cannot bind is one usage line (exit 2).

    A busy port, an address not on this machine, a host name that does not resolve:
    aiohttp's own text repeats the address, the system's words are enough.
    """
    try:
        run_to_end(server)
    except OSError as exc:
        reason = (
            os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or type(exc).__name__)
        )
        fail(f"cannot listen on {host}:{port}: {reason}", 2)


def main() -> None:
    from . import commands  # noqa: F401, PLC0415 - registers the sub-commands on `app`

    try:
        app()
    except ConfigError as exc:
        sys.stderr.write(f"prik: error: {exc}\n")
        sys.exit(2)
    except PrikError as exc:
        sys.stderr.write(f"prik: error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("prik: interrupted\n")
        sys.exit(130)
