"""`prik broker run`: the router service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker import RouterService, TenantsFile
from contracts import ConfigError
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import load_settings

from .app import app

__all__ = ["broker_app"]

broker_app = typer.Typer(
    help="The router: ingress topics in, delivery and replies topics out.", no_args_is_help=True
)
app.add_typer(broker_app, name="broker")


@broker_app.command("run")
def run(
    tenants: Annotated[
        Path | None, typer.Option("--tenants", help="Tenants TOML file (default: $PRIK_TENANTS).")
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            help="Name of this instance in Kafka (client id) and logs. Default: host name, process id "
            "and a random part, unique per process. Fencing does not depend on it: every "
            "transaction for input partition p is written as prik-router-p<p>.",
        ),
    ] = None,
) -> None:
    """Route every prik.ingress.* topic until SIGINT/SIGTERM.

    Each batch is consumed, routed and committed as one Kafka transaction; on a
    signal the batch in flight finishes and commits before the router leaves
    its group. Example:

        PRIK_TENANTS=deploy/tenants.example.toml prik broker run
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    path = tenants or settings.tenants
    if path is None:
        msg = "no tenants file: set PRIK_TENANTS or pass --tenants"
        raise ConfigError(msg)
    instance_id = instance

    async def _main() -> None:
        async with RouterService(settings, TenantsFile(path), instance_id=instance_id) as service:
            await service.run()

    run_to_end(_main())
