"""`prik demo`: the main job — everything, locally, with live progress and a final account."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from prik.demo import DemoOptions, logs_to, new_run_dir, run_demo
from prik.runner import run_to_end
from prik.settings import load_settings

from .app import app, fail

__all__ = ["demo"]

# Wide enough for the final table when the output is a file or a pipe, not a terminal.
_PLAIN_WIDTH = 150


@app.command("demo")
def demo(  # noqa: PLR0917  typer reads its options from the parameters
    seconds: Annotated[
        float, typer.Option("--seconds", min=5, max=3600, help="How long the senders send.")
    ] = 30.0,
    rate: Annotated[
        float, typer.Option("--rate", min=1, max=5000, help="Messages per second from the senders.")
    ] = 60.0,
    drain_timeout: Annotated[
        float,
        typer.Option("--drain-timeout", min=1, help="Seconds to wait, after sending, for the last receipts."),
    ] = 60.0,
    run_root: Annotated[
        Path,
        typer.Option("--run-dir", help="Where each run keeps its log (and its Kafka, if it starts one)."),
    ] = Path(".prik/demo"),
    dashboard_port: Annotated[
        int,
        typer.Option(
            "--dashboard-port", min=0, max=65535, help="Port of the run's live dashboard (0: any free one)."
        ),
    ] = 0,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Start a SASL_SSL broker for the run (SCRAM users, ACLs from the tenants, TLS); "
            "every sender, the router and each consumer connect as their own Kafka user.",
        ),
    ] = False,
) -> None:
    """Run prik end to end on this machine and account for every message.

    Uses the Kafka at PRIK_KAFKA__BOOTSTRAP when it answers, else starts a local
    one for the run. Then: topics under a fresh prefix, a directory of 200
    clinics over three LPS vendors, the router, one consumer per vendor
    delivering by signed webhook to a reference LPS, and senders (a video
    platform, three municipalities) sending for --seconds. One clinic's endpoint
    fails for the middle third. At the end a table per message type; exit 1 if
    any message lacks its final receipt or got two. Ctrl-C stops everything.

    With --secure the run starts its own SASL_SSL broker, provisions a SCRAM user and
    the ACLs of DESIGN.md per tenant, and every party connects with its own credentials
    (kept in the run folder, 0600).
    """
    settings = load_settings()
    console = Console(width=None if sys.stdout.isatty() else _PLAIN_WIDTH, highlight=False)
    options = DemoOptions(
        seconds=seconds,
        rate=rate,
        drain_timeout=drain_timeout,
        run_root=run_root,
        secure=secure,
        dashboard_port=dashboard_port,
    )
    run_dir = new_run_dir(run_root)
    with logs_to(run_dir / "demo.log"):
        result = run_to_end(run_demo(settings, options, console, run_dir))
        # Futures aiokafka left behind report their errors when collected: into the log, not the screen.
        gc.collect()
    console.print(f"run folder: {result.run_dir} (demo.log)")
    if result.interrupted:
        sys.stderr.write("prik: interrupted; everything the demo started is stopped\n")
        raise typer.Exit(130)
    if result.problems:
        fail("demo failed: " + "; ".join(result.problems))
    console.print(
        f"[bold green]OK[/]: {result.sent} messages, each with exactly one final receipt "
        "(0 lost, 0 duplicates)"
    )
