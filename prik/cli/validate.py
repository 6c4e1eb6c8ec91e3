"""`prik validate` and `prik schema export`: the contracts, from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contracts import ParseError, codec, json_schemas, parse, schema_filename

from .app import app

__all__ = ["export_schemas", "validate"]

schema_app = typer.Typer(help="JSON Schemas of the message types.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@app.command("validate")
def validate(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="CloudEvents JSON files (structured mode), one message each.", show_default=False
        ),
    ],
) -> None:
    """Check messages against the contract: exit 0 if all are valid, else 1 with one line per invalid file."""
    failed = 0
    for path in files:
        try:
            message = parse(path.read_bytes())
        except OSError as exc:
            failed += 1
            typer.echo(f"{path}: cannot read: {exc.strerror}", err=True)
        except ParseError as exc:
            failed += 1
            typer.echo(f"{path}: invalid ({exc.stage}): {exc.reason}", err=True)
        else:
            typer.echo(f"{path}: ok ({message.type})")
    if failed:
        typer.echo(f"{failed} of {len(files)} file(s) invalid", err=True)
        raise typer.Exit(1)


@schema_app.command("export")
def export_schemas(
    directory: Annotated[Path, typer.Argument(help="Folder to write into (created if missing).")],
) -> None:
    """Write one JSON Schema file per message type."""
    directory.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for message_type, schema in schemas.items():
        (directory / schema_filename(message_type)).write_bytes(codec.dumps(schema, indent=True) + b"\n")
    typer.echo(f"wrote {len(schemas)} schemas to {directory}")
