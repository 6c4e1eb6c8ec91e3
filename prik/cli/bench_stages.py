"""`prik bench publisher` and `prik bench consumer`: one stage each, against raw aiokafka in the same run."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts import codec
from prik.bench.consuming import bench_consumer
from prik.bench.publishing import bench_publisher
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import Settings, load_settings

from .bench import bench_app, progress_line

__all__ = ["consumer", "publisher"]

Messages = Annotated[int, typer.Option("--messages", min=100, help="Messages in each round of each stage.")]
Rounds = Annotated[
    int, typer.Option("--rounds", min=1, help="Rounds of each stage, alternating; the best of each counts.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]

Bench = Callable[[Settings, int, int, Callable[[str], None]], Coroutine[Any, Any, dict[str, Any]]]


def _run(bench: Bench, messages: int, rounds: int, as_json: bool) -> dict[str, Any]:
    settings = load_settings()
    # Info lines from the consumer would bury the progress and the result.
    configure_logging("warning")
    say = progress_line(as_json=as_json)

    return run_to_end(bench(settings, messages, rounds, say))


def _show(report: dict[str, Any], names: dict[str, str], counted: dict[str, str]) -> None:
    table = Table(
        title=f"{report['stage']}: {report['messages']} messages x {report['rounds']} rounds (msg/s: best)"
    )
    for column in ("stage", "msg/s", "median", "CPU µs", *counted.values()):
        table.add_column(column, justify="right")
    for key, name in names.items():
        row = report[key]
        cells = [str(row.get(field, "-")) for field in counted]
        table.add_row(
            name,
            f"{row['per_second']:.0f}",
            f"{row['median_per_second']:.0f}",
            f"{row['cpu_us_per_message']:.1f}",
            *cells,
        )
    console = Console()
    console.print(table)
    verdict = "met" if report["met"] else "not met"
    console.print(f"prik / baseline: {report['ratio']:.3f} (target {report['target']}: {verdict})")
    if "ratio_to_reference" in report:
        console.print(f"prik / reference: {report['ratio_to_reference']:.3f}")


@bench_app.command("publisher")
def publisher(messages: Messages = 20_000, rounds: Rounds = 3, as_json: AsJson = False) -> None:
    """The sender SDK's `Publisher.publish_many` against raw aiokafka producing the same bytes.

    Same notices, same keys, values and headers, same producer settings (acks=all,
    idempotent); chunks of 1,000, four in flight, every acknowledgement awaited.
    The Publisher encodes the notices itself; the baseline sends bytes encoded
    before the clock starts. Fresh topics on the broker at PRIK_KAFKA__BOOTSTRAP,
    deleted afterwards. Example:

        prik bench publisher --messages 20000 --json
    """
    report = _run(bench_publisher, messages, rounds, as_json)
    if as_json:
        sys.stdout.write(codec.dumps(report).decode() + "\n")
        return
    _show(
        report,
        {"baseline": "aiokafka", "prik": "Publisher"},
        {"acknowledged": "acknowledged"},
    )


@bench_app.command("consumer")
def consumer(messages: Messages = 20_000, rounds: Rounds = 2, as_json: AsJson = False) -> None:
    """The clinic consumer delivering to an in-process LPS against a raw aiokafka consume loop.

    The same delivery records (as the router writes them) are read from the start
    by a fresh group each round: raw aiokafka (read_committed, manual commits)
    counting them (the baseline); the same loop writing one acknowledged record
    per record (the reference: what confirming each record in Kafka costs); and
    `ClinicConsumer` parsing, delivering in each clinic's order to an in-process
    callback and writing each receipt before committing. Fresh
    topics on the broker at PRIK_KAFKA__BOOTSTRAP, deleted afterwards. Example:

        prik bench consumer --messages 20000 --json
    """
    report = _run(bench_consumer, messages, rounds, as_json)
    if as_json:
        sys.stdout.write(codec.dumps(report).decode() + "\n")
        return
    _show(
        report,
        {"baseline": "aiokafka", "reference": "+ writes", "prik": "prik"},
        {"consumed": "read", "delivered": "delivered", "receipts": "receipts", "committed": "committed"},
    )
