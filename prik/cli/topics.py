"""`prik topics apply`: create and fix every topic the tenants need."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contracts import ConfigError
from deploy.acls import apply_access
from deploy.topics import apply_topics
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import load_settings
from prik.tenants import tenants_from_settings

from .app import app

__all__ = ["topics_app"]

topics_app = typer.Typer(help="Kafka topics for the tenants.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("apply")
def apply(
    tenants: Annotated[
        Path | None, typer.Option("--tenants", help="Tenants TOML file (default: $PRIK_TENANTS).")
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(
            "--credentials",
            help=(
                "SASL_SSL only: folder of DIR/<id>.password files, one per tenant and one for router; "
                "a missing one is made (0600, random). Passwords are never printed."
            ),
        ),
    ] = None,
) -> None:
    """Create every topic the tenants need; fix configs that drifted; grow too few partitions.

    Per tenant an ingress and a replies topic, per LPS a deliver topic, plus the
    dead-letter, directory (compacted) and tasks (compacted) topics. Safe to run
    again: it only changes what differs, and never removes partitions. Example:

        PRIK_TENANTS=deploy/tenants.example.toml prik topics apply

    With PRIK_KAFKA__SECURITY_PROTOCOL=SASL_SSL (as the super user admin) it also
    keeps one SCRAM user per tenant and one for router, and exactly the ACLs of
    DESIGN.md; a tenant dropped from the file loses its user and its ACLs:

        prik topics apply --tenants tenants.toml --credentials ./credentials
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    parties = tenants_from_settings(settings, tenants)
    if settings.kafka.sasl and credentials is None:
        msg = "SASL_SSL: pass --credentials DIR, the folder of the tenants' and the router's password files"
        raise ConfigError(msg)
    report = run_to_end(apply_topics(settings.kafka, settings.topics, parties))
    for name in report.created:
        typer.echo(f"created {name}")
    for note in report.notes:
        typer.echo(note)
    typer.echo(report.replication_line())
    typer.echo(report.summary())
    if credentials is None:
        return
    if not settings.kafka.sasl:
        typer.echo("PLAINTEXT: no users or ACLs to keep (--credentials is for SASL_SSL)", err=True)
        return
    access = run_to_end(apply_access(settings.kafka, settings.topics, parties, credentials))
    for line in access.lines():
        typer.echo(line)
    typer.echo(access.summary())
