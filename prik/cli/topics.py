"""`prik topics apply`: create and fix every topic the tenants need."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from deploy.topics import apply_topics
from prik.logs import configure_logging
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
) -> None:
    """Create every topic the tenants need; fix configs that drifted; grow too few partitions.

    Per tenant an ingress and a replies topic, per LPS a deliver topic, plus the
    dead-letter, directory (compacted) and tasks (compacted) topics. Safe to run
    again: it only changes what differs, and never removes partitions. Example:

        PRIK_TENANTS=deploy/tenants.example.toml prik topics apply
    """
    settings = load_settings()
    configure_logging(settings.log_level)
    parties = tenants_from_settings(settings, tenants)
    report = asyncio.run(apply_topics(settings.kafka, settings.topics, parties))
    for name in report.created:
        typer.echo(f"created {name}")
    for note in report.notes:
        typer.echo(note)
    typer.echo(report.summary())
