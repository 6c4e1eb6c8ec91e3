"""`prik bench routers` and `prik bench fencing`: what scaling the router out costs and gains."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts import codec
from prik.bench import bench_fencing, bench_scaling
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import load_settings

from .app import fail
from .bench import bench_app, progress_line

__all__ = ["fencing", "routers"]


@bench_app.command("routers")
def routers(
    counts: Annotated[
        str, typer.Option("--routers", help="Comma-separated numbers of router processes to measure.")
    ] = "1,2,3",
    messages: Annotated[
        int, typer.Option("--messages", min=1000, help="Backlog routed by each count.")
    ] = 20_000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Router throughput with N `prik broker run` processes in group prik-router.

    For each count the same backlog waits on fresh topics of the broker (or
    cluster) at PRIK_KAFKA__BOOTSTRAP; the routers start together and the rate is
    read off the group's committed offsets between 10 % and 90 % of it. On a
    3-node cluster started with `prik kafka start --brokers 3`:

        PRIK_KAFKA__BOOTSTRAP=127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094 prik bench routers
    """
    try:
        wanted = [int(part) for part in counts.split(",") if part.strip()]
    except ValueError:
        fail(f"--routers takes numbers separated by commas, not {counts!r}", 2)
    if not wanted or min(wanted) < 1:
        fail("--routers needs at least one count of 1 or more", 2)
    settings = load_settings()
    configure_logging("warning")
    say = progress_line(as_json=as_json)

    with tempfile.TemporaryDirectory(prefix="prik-bench-routers-") as workdir:
        results = run_to_end(bench_scaling(settings, wanted, messages, Path(workdir), say))
    base = results[0].per_second
    rows = [
        {
            "routers": r.routers,
            "messages": r.messages,
            "per_second": round(r.per_second, 1),
            "ratio": round(r.per_second / base, 3),
        }
        for r in results
    ]
    if as_json:
        sys.stdout.write(
            codec.dumps({"bootstrap": settings.kafka.bootstrap, "routers": rows}).decode() + "\n"
        )
        return
    table = Table(title=f"routers on {settings.kafka.bootstrap}")
    for column in ("routers", "msg/s", f"/ {results[0].routers} router(s)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["routers"]), f"{row['per_second']:.0f}", f"{row['ratio']:.2f}")
    Console().print(table)


@bench_app.command("fencing")
def fencing(
    messages: Annotated[int, typer.Option("--messages", min=1000, help="Records each model moves.")] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a table.")] = False,
) -> None:
    """What fencing routers costs: three transactional pass-throughs (no rules) over the same records.

    aiokafka with one transactional id per instance (not fenced against zombies),
    aiokafka with one id per input partition (the KIP-98 model the router uses), and
    librdkafka (confluent-kafka) with KIP-447 group metadata. Ratios are to the first.
    """
    settings = load_settings()
    configure_logging("warning")
    say = progress_line(as_json=as_json)

    results = run_to_end(bench_fencing(settings.kafka, messages, say))
    base = results[0].per_second
    rows = [
        {"model": r.model, "per_second": round(r.per_second, 1), "ratio": round(r.per_second / base, 3)}
        for r in results
    ]
    if as_json:
        sys.stdout.write(codec.dumps({"messages": messages, "models": rows}).decode() + "\n")
        return
    table = Table(title=f"transactional pass-through, {messages} records")
    for column in ("model", "msg/s", f"/ {results[0].model}"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["model"]), f"{row['per_second']:.0f}", f"{row['ratio']:.2f}")
    Console().print(table)
