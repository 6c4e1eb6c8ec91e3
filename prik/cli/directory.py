"""`prik directory load|show`: which LPS serves which clinic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts import ConfigError
from contracts.identifiers import SOR_PATTERN
from deploy.directory import load_directory, parse_directory_csv, read_directory
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import Settings, load_settings
from prik.tenants import load_tenants

from .app import app, fail

__all__ = ["directory_app"]

directory_app = typer.Typer(
    help="The clinic directory: a compacted topic mapping each clinic's SOR code to its LPS.",
    no_args_is_help=True,
)
app.add_typer(directory_app, name="directory")


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level)
    return settings


@directory_app.command("load")
def load(
    file: Annotated[
        Path, typer.Argument(help="CSV: a header row, then sor,lps[,name,ydernummer].", show_default=False)
    ],
    tenants: Annotated[
        Path | None,
        typer.Option("--tenants", help="Check every lps against this tenants file (default: $PRIK_TENANTS)."),
    ] = None,
) -> None:
    """Load clinics into the directory; all rows or none.

    Every bad row is reported with its line number and then nothing is loaded.
    Loading a file again only overwrites the same clinics. Example file:

        sor,lps,name,ydernummer
        123456789012345,lps-xmo,Lægerne i Byen,012345

    Example: prik directory load clinics.csv --tenants deploy/tenants.example.toml
    """
    settings = _settings()
    path = tenants or settings.tenants
    parties = load_tenants(path) if path is not None else None
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"{file}: cannot read: {reason}"
        raise ConfigError(msg) from None
    entries = parse_directory_csv(text, parties)
    count = run_to_end(load_directory(settings.kafka, settings.topics, entries))
    typer.echo(f"loaded {count} clinic(s) into {settings.topics.directory}")


@directory_app.command("show")
def show(
    sor: Annotated[str | None, typer.Argument(help="Show only this clinic.", show_default=False)] = None,
) -> None:
    """Print the directory as the router sees it now (latest entry per SOR), as a table.

    With a SOR code, only that clinic; exit 1 when it is not in the directory.
    """
    if sor is not None and re.fullmatch(SOR_PATTERN, sor) is None:
        # Not echoed: a CPR typed here by mistake must not reach the terminal log.
        fail("not a SOR code: 11-18 digits", 2)
    settings = _settings()
    directory = run_to_end(read_directory(settings.kafka, settings.topics))
    if sor is not None:
        if sor not in directory:
            fail(f"SOR {sor} is not in the directory")
        directory = {sor: directory[sor]}
    table = Table("SOR", "LPS", "name", "ydernummer", title=f"{settings.topics.directory}: {len(directory)}")
    for key in sorted(directory):
        entry = directory[key]
        table.add_row(entry.sor, entry.lps, entry.name or "", entry.ydernummer or "")
    Console(width=200).print(table)
