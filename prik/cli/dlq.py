"""`prik dlq list` and `prik dlq replay`: dead letters, for operators."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.dlq import DeadLetter, Skipped, list_dead_letters, replay_dead_letters
from contracts import ConfigError
from prik.runner import run_to_end
from prik.settings import load_settings

from .app import app

__all__ = ["dlq_app"]

dlq_app = typer.Typer(
    help="Dead letters: what the router or a consumer gave up on, with the stage and the reason. "
    "Patient data is never shown.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def list_(
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show only the newest N.")] = None,
) -> None:
    """Show dead letters: stage, reason, message id and type, where the original record was,
    and whether `prik dlq replay` can use it (as far as the letter's headers tell).

    On a terminal a table; piped, one tab-separated line per dead letter.

    Example: prik dlq list --limit 20
    """
    settings = load_settings()
    letters = run_to_end(list_dead_letters(settings.kafka, settings.topics, limit=limit))
    if not letters:
        typer.echo(f"no dead letters in {settings.topics.dlq}")
        return
    console = Console()
    if not console.is_terminal:
        # Piped: one tab-separated line each, for grep and cut; the replay column comes last.
        for d in letters:
            fields = (d.stage, d.reason, d.message_id or "-", d.message_type or "-", d.where, _replayable(d))
            typer.echo("\t".join(fields))
        return
    table = Table(title=f"{len(letters)} dead letter(s) in {settings.topics.dlq}")
    for column in ("stage", "reason", "message id", "type", "original position", "replay"):
        table.add_column(column, overflow="fold")
    for d in letters:
        # Text, not str: a letter's headers are anyone's text, and rich would read `[...]` as markup.
        cells = (d.stage, d.reason, d.message_id or "-", d.message_type or "-", d.where, _replayable(d))
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)


def _replayable(letter: DeadLetter) -> str:
    """What the letter's headers alone say: `ok`, or why `prik dlq replay` would skip it."""
    return f"no: {letter.problem}" if letter.problem else "ok"


@dlq_app.command("replay")
def replay(
    message_id: Annotated[
        str | None, typer.Option("--id", help="Replay the dead letters of this message id.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Replay every dead letter not replayed by an earlier --all.")
    ] = False,
) -> None:
    """Put the originals of dead letters back where they came from.

    A letter is only a pointer: the original record is read back from the topic,
    partition and offset the letter names, and that record (key, value, headers) is
    republished, never the letter's own bytes. A router dead letter goes back to its
    ingress topic, where the router checks it again from the start; a consumer's goes
    back to its delivery topic. A letter that names no ingress or delivery topic, an
    original that is gone, or an original the letter does not match is skipped with
    the reason. Replays pass the router's duplicate window on purpose. --all
    remembers how far it got (consumer group <prefix>-dlq-replay) and never sends a
    letter twice; --id always sends the letters of that id. Exit 1 when a letter was
    skipped. Fix the cause first (the directory, the tenants file, the endpoint), then,
    for example:

        prik dlq replay --id 7d1c6f6e-2f0e-4a6e-9b1d-3f0e1c2a9b10
    """
    if (message_id is None) == (not all_):
        msg = "choose what to replay: --id ID or --all"
        raise ConfigError(msg)
    settings = load_settings()

    def chosen(letter: DeadLetter) -> bool:
        return all_ or letter.message_id == message_id

    def skipped(skip: Skipped) -> None:
        typer.echo(skip.line(), err=True)

    report = run_to_end(
        replay_dead_letters(settings.kafka, settings.topics, chosen, only_new=all_, on_skip=skipped)
    )
    if not report.replayed and not report.skipped:
        if all_:
            typer.echo(f"nothing left to replay in {settings.topics.dlq}")
            return
        typer.echo(f"no dead letter with id {message_id} in {settings.topics.dlq}", err=True)
        raise typer.Exit(1)
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)
