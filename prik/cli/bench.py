"""`prik bench`: the benchmark, reported as ratios to baselines from the same run."""

from __future__ import annotations

import asyncio
import contextlib
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

from contracts import PrikError, codec, parse_tenants
from deploy import acquire_kafka
from deploy.topics import delete_topics_under
from prik.bench import PipelineOptions, bench_codec, bench_pipeline, bench_routing
from prik.bench.routing import TENANTS_TOML
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import KafkaSettings, load_settings

from .app import app

__all__ = ["bench", "bench_app", "progress_line"]


bench_app = typer.Typer(help="Benchmarks, as ratios to baselines measured in the same run.")
app.add_typer(bench_app, name="bench")


def progress_line(*, as_json: bool) -> Callable[[str], None]:
    """Where a benchmark's progress goes: dim lines on stderr, or nowhere when --json is asked for."""
    console = Console(stderr=True)

    def say(text: str) -> None:
        if not as_json:
            console.print(f"[dim]{text}[/dim]")

    return say


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
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
    read the ratios, not the absolute numbers. `prik bench pipeline` measures the
    whole way, publisher to LPS.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    # Info lines from the router would bury the progress and the result.
    configure_logging("warning")
    say = progress_line(as_json=as_json)
    report = run_to_end(_run(settings.kafka, messages, say))
    if as_json:
        sys.stdout.write(codec.dumps(report).decode() + "\n")
        return
    console = Console()
    routing = Table(title=f"routing {report['routing']['messages']} messages")
    for column in (
        "baseline msg/s",
        "router msg/s",
        "router / baseline",
        "baseline CPU µs/msg",
        "router CPU µs/msg",
    ):
        routing.add_column(column, justify="right")
    r = report["routing"]
    routing.add_row(
        f"{r['baseline_per_second']:.0f}",
        f"{r['router_per_second']:.0f}",
        f"{r['ratio']:.2f}",
        f"{r['baseline_cpu_us_per_message']:.1f}",
        f"{r['router_cpu_us_per_message']:.1f}",
    )
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
            try:
                routing = await bench_routing(settings, parse_tenants(TENANTS_TOML), messages, say)
            finally:
                with contextlib.suppress(PrikError):
                    await delete_topics_under(settings.kafka, settings.topic_prefix)
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
            "baseline_cpu_us_per_message": routing.baseline_cpu_us,
            "router_cpu_us_per_message": routing.router_cpu_us,
        },
        "codec": [
            {"operation": c.operation, "baseline_us": c.baseline_us, "prik_us": c.prik_us, "ratio": c.ratio}
            for c in codec_results
        ],
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@bench_app.command("pipeline")
def pipeline(
    rate: Annotated[float, typer.Option("--rate", min=1, help="Messages per second published.")] = 1000.0,
    seconds: Annotated[float, typer.Option("--seconds", min=1, help="How long to publish.")] = 30.0,
    saturate: Annotated[
        bool,
        typer.Option(
            "--saturate", help="Publish rate x seconds messages as fast as they go: messages/s end to end."
        ),
    ] = False,
    webhook: Annotated[
        bool, typer.Option("--webhook", help="Deliver to the reference LPS over HTTP (signed webhooks).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Publisher -> router -> consumer -> LPS, each in its own process, against raw baselines.

    In the same run, on the same bytes and at the same rate: raw aiokafka produce ->
    consume, and produce -> transactional pass-through -> consume; then prik's
    Publisher -> `prik broker run` -> the clinic consumer -> an in-process LPS
    (--webhook: the reference LPS over HTTP). Latency is the message's publish time
    -> the LPS has it (p50, p99, p99.9, max); kept up means every message sent was
    delivered. Uses the broker at PRIK_KAFKA__BOOTSTRAP if it answers, else starts
    a local one. Progress goes to stderr. Example:

        prik bench pipeline --rate 1000 --seconds 30
    """
    settings = load_settings()
    configure_logging("warning")
    options = PipelineOptions(rate=rate, seconds=seconds, saturate=saturate, webhook=webhook)
    err = Console(stderr=True)
    with err.status("starting", spinner="dots") as status:

        def say(text: str) -> None:
            err.print(f"[dim]{text}[/dim]")

        def show(text: str) -> None:
            status.update(text)

        report = run_to_end(_run_pipeline(settings.kafka, options, say, show))
    if as_json:
        sys.stdout.write(codec.dumps(report).decode() + "\n")
        return
    _print_pipeline(report)


async def _run_pipeline(
    kafka: KafkaSettings, options: PipelineOptions, say: Callable[[str], None], status: Callable[[str], None]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prik-bench-pipeline-") as folder:
        broker = await acquire_kafka(kafka, Path(folder) / "kafka")
        try:
            say(f"kafka: {broker.description}")
            report = await bench_pipeline(broker.admin, Path(folder), options, say, status)
        finally:
            await broker.release()
    report["kafka"] = broker.description
    return report


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_pipeline(report: dict[str, Any]) -> None:
    # Piped or captured, rich would assume 80 columns and cut the figures short.
    console = Console() if sys.stdout.isatty() else Console(width=110)
    mode = "as fast as it goes" if report["mode"] == "saturate" else f"{report['rate']:.0f} msg/s"
    stages = Table(title=f"{report['messages']} messages, {mode}; latency in ms")
    for column in ("stage", "sent", "delivered", "backlog", "p50", "p99", "p99.9", "max", "msg/s"):
        stages.add_column(column, justify="right")
    memory = Table(title="peak RSS, MB")
    for column in ("stage", "process", "MB"):
        memory.add_column(column, justify="right")
    for name, s in report["stages"].items():
        latency = s["latency_ms"]
        rate = s["end_to_end_per_second"]
        stages.add_row(
            name,
            str(s["sent"]),
            str(s["delivered"]),
            str(s["backlog"]),
            *(_ms(latency[k]) for k in ("p50", "p99", "p999", "max")),
            "-" if rate is None else f"{rate:.0f}",
        )
        for process, mb in s["peak_rss_mb"].items():
            memory.add_row(name, process, _ms(mb))
    console.print(stages)
    ratios = Table(title="ratios (latency: lower is better; msg/s: higher is better)")
    for column in ("comparison", "p50", "p99", "p99.9", "max", "msg/s", "publish/s"):
        ratios.add_column(column, justify="right")
    for name, r in report["ratios"].items():
        keys = ("p50", "p99", "p999", "max", "end_to_end_per_second", "publish_per_second")
        ratios.add_row(name.replace("_vs_", " / "), *(_x(r[k]) for k in keys))
    console.print(ratios)
    console.print(memory)
    targets = ", ".join(f"{k}: {v}" for k, v in report["targets"].items() if v is not None)
    console.print(f"targets: {targets}")
