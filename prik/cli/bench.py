"""`prik bench`: the benchmark, reported as ratios to baselines from the same run."""

from __future__ import annotations

import asyncio
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts import codec, parse_tenants
from deploy import acquire_kafka
from prik.bench import bench_codec, bench_routing
from prik.bench.routing import TENANTS_TOML
from prik.logs import configure_logging
from prik.settings import KafkaSettings, load_settings

from .app import app

__all__ = ["bench"]


@app.command("bench")
def bench(
    messages: Annotated[
        int, typer.Option("--messages", min=100, help="Records pushed through the router.")
    ] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Measure the router and the codec against baselines in the same run.

    Routing: the same pre-published records go once through a transactional
    pass-through (consume, produce, commit; no rules) and once through the router
    with every rule; the ratio is what the rules cost. Codec: `parse` and `to_bytes`
    per message against plain orjson. Uses the broker at PRIK_KAFKA__BOOTSTRAP if it
    answers, else starts a local one for the run. The machine is shared and noisy:
    read the ratios, not the absolute numbers.
    """
    settings = load_settings()
    # Info lines from the router would bury the progress and the result.
    configure_logging("warning")
    say = (lambda _text: None) if as_json else (lambda text: Console(stderr=True).print(f"[dim]{text}[/dim]"))
    report = asyncio.run(_run(settings.kafka, messages, say))
    if as_json:
        sys.stdout.write(codec.dumps(report).decode() + "\n")
        return
    console = Console()
    routing = Table(title=f"routing {report['routing']['messages']} messages")
    for column in ("baseline msg/s", "router msg/s", "router / baseline"):
        routing.add_column(column, justify="right")
    r = report["routing"]
    routing.add_row(f"{r['baseline_per_second']:.0f}", f"{r['router_per_second']:.0f}", f"{r['ratio']:.2f}")
    console.print(routing)
    codec_table = Table(title="codec, per message")
    for column in ("operation", "baseline µs", "prik µs", "prik / baseline"):
        codec_table.add_column(column, justify="right")
    for c in report["codec"]:
        codec_table.add_row(
            c["operation"], f"{c['baseline_us']:.1f}", f"{c['prik_us']:.1f}", f"{c['ratio']:.1f}"
        )
    console.print(codec_table)
    console.print(f"peak memory of this process: {report['peak_rss_mb']:.0f} MB")


async def _run(kafka: KafkaSettings, messages: int, say: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prik-bench-") as folder:
        broker = await acquire_kafka(kafka, Path(folder) / "kafka")
        try:
            say(f"kafka: {broker.description}")
            settings = load_settings(
                kafka=broker.admin,
                # The bench's own router instance: any key will do, the records are its own.
                route_key=secrets.token_urlsafe(32),
                topic_prefix=f"bench-{int(time.time())}",
            )
            routing = await bench_routing(settings, parse_tenants(TENANTS_TOML), messages, say)
        finally:
            await broker.release()
    say("codec")
    codec_results = await asyncio.to_thread(bench_codec)
    return {
        "routing": {
            "messages": routing.messages,
            "baseline_per_second": routing.baseline_per_second,
            "router_per_second": routing.router_per_second,
            "ratio": routing.ratio,
        },
        "codec": [
            {"operation": c.operation, "baseline_us": c.baseline_us, "prik_us": c.prik_us, "ratio": c.ratio}
            for c in codec_results
        ],
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
