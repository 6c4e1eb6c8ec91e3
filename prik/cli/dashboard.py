"""`prik dashboard`: the operators' live web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prik.dashboard import Dashboard
from prik.dashboard.peak import accounting_peak
from prik.logs import configure_logging
from prik.settings import load_settings
from prik.tenants import tenants_from_settings

from .app import app, serve_or_fail

__all__ = ["dashboard"]


@app.command("dashboard")
def dashboard(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to serve on (0: any free).")
    ] = 8080,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; keep it on loopback unless a proxy guards it.")
    ] = "127.0.0.1",
    tenants: Annotated[
        Path | None, typer.Option("--tenants", help="Tenants TOML file (default: $PRIK_TENANTS).")
    ] = None,
) -> None:
    """Serve one live web page for operators until SIGINT/SIGTERM.

    Every 2 s, read from Kafka itself (so it works while the router is down):
    messages per second per sender and per LPS, outcomes of the last 5 minutes,
    the router's backlog, each LPS consumer group's lag and oldest waiting message,
    the dead-letter queue, clinics failing or holding deliveries back (by SOR code
    only), and the last peak. The page needs nothing from outside this server.
    Also GET /api/state (the same numbers as JSON) and GET /events (server-sent
    events). Example:

        PRIK_TENANTS=deploy/tenants.example.toml prik dashboard --port 8080
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    parties = tenants_from_settings(settings, tenants)
    peak = accounting_peak(settings.kafka, settings.topics, parties)
    page = Dashboard(settings.kafka, settings.topics, parties, host=host, port=port, peak=peak)

    def started(url: str) -> None:
        typer.echo(f"dashboard at {url} (Ctrl-C stops)")

    serve_or_fail(page.run(started), host, port)
