"""What the demo shows: live counters while it runs, one table per message type at the end.

On a terminal the counters update in place (rich `Live`); elsewhere (CI, a pipe)
a plain progress line is printed every few seconds instead, so logs stay readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contracts import Outcome

from .clinics import ClinicSide
from .tally import Tally

__all__ = ["Status", "final_report", "live_view", "status_line"]

_PLAIN_EVERY = 5.0
_OUTCOMES = (Outcome.DELIVERED, Outcome.EXPIRED, Outcome.REJECTED, Outcome.DEAD_LETTERED)


@dataclass(slots=True)
class Status:
    """The run's phase and setting, updated by the runner, read by the view."""

    prefix: str
    seconds: float
    rate: float
    phase: str = "starting"
    kafka: str = "-"
    dashboard: str | None = None
    failing_clinic: str = "-"
    failing_lps: str = "-"
    outage: tuple[float, float] = (0.0, 0.0)
    sending_since: float | None = None
    drain_since: float | None = None
    notes: list[str] = field(default_factory=list)

    def sending_for(self) -> float:
        return 0.0 if self.sending_since is None else time.monotonic() - self.sending_since


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _counter_table(tally: Tally, *, final: bool) -> Table:
    table = Table(title=None if not final else "Per message type", title_justify="left", expand=False)
    table.add_column("type", style="bold")
    table.add_column("sent", justify="right")
    table.add_column("delivered", justify="right", style="green")
    table.add_column("expired", justify="right", style="yellow")
    table.add_column("rejected", justify="right", style="magenta")
    table.add_column("dead-lettered", justify="right", style="red")
    table.add_column("lost" if final else "pending", justify="right")
    if final:
        table.add_column("dup", justify="right")
        for p in ("p50", "p95", "p99"):
            table.add_column(f"{p} ms", justify="right", style="cyan")
    for name, row in tally.rows.items():
        cells = [name, str(row.sent), *(str(row.outcomes[o]) for o in _OUTCOMES), str(row.pending)]
        if final:
            cells.append(str(row.duplicates))
            cells += [_ms(row.latency.percentile_ms(p)) for p in (50, 95, 99)]
        table.add_row(*cells)
    totals = [
        "all",
        str(tally.sent_total),
        *(str(tally.outcome_total(o)) for o in _OUTCOMES),
        str(tally.pending),
    ]
    if final:
        totals.append(str(tally.duplicates))
        totals += [_ms(tally.all_latency.percentile_ms(p)) for p in (50, 95, 99)]
    table.add_section()
    table.add_row(*totals, style="bold")
    return table


def _header(status: Status) -> Text:
    text = Text()
    text.append("prik demo", style="bold")
    text.append(f"  run {status.prefix}  ·  Kafka {status.kafka}\n")
    if status.dashboard is not None:
        text.append(f"dashboard {status.dashboard}\n", style="cyan")
    if status.phase == "sending":
        text.append(f"sending  {status.sending_for():5.1f} s of {status.seconds:g} s", style="bold green")
        text.append(f"  at ~{status.rate:g} msg/s\n")
    else:
        text.append(f"{status.phase}\n", style="bold yellow")
    start, end = status.outage
    elapsed = status.sending_for()
    if status.sending_since is None or elapsed < start:
        state = f"will answer 503 from {start:.0f} s to {end:.0f} s"
    elif elapsed < end:
        state = f"answering 503 until {end:.0f} s"
    else:
        state = "recovered"
    text.append(f"failing clinic {status.failing_clinic} ({status.failing_lps}): {state}")
    return text


def _vendors(clinics: ClinicSide) -> Text:
    parts = [
        f"{v.lps}: {v.received} received, {v.retries} retries, {v.failed_answers} failed answers"
        for v in clinics.vendors
    ]
    return Text("  ·  ".join(parts), style="dim")


def _render(status: Status, tally: Tally, clinics: ClinicSide) -> RenderableType:
    answered, delivered = tally.round_trips
    trips = Text(f"task round trips answered: {answered} of {delivered} delivered tasks", style="dim")
    return Group(_header(status), _counter_table(tally, final=False), trips, _vendors(clinics))


def status_line(status: Status, tally: Tally) -> str:
    counts = ", ".join(f"{o.value} {tally.outcome_total(o)}" for o in _OUTCOMES)
    return (
        f"[{status.phase} {status.sending_for():.0f}s] sent {tally.sent_total}, {counts}, "
        f"pending {tally.pending}"
    )


@contextlib.asynccontextmanager
async def _plain_progress(console: Console, status: Status, tally: Tally) -> AsyncIterator[None]:
    async def tick() -> None:
        while True:
            await asyncio.sleep(_PLAIN_EVERY)
            console.print(status_line(status, tally), markup=False, highlight=False)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def live_view(
    console: Console, status: Status, tally: Tally, clinics: ClinicSide
) -> AsyncIterator[None]:
    """Show progress until the block ends."""
    if not console.is_terminal:
        async with _plain_progress(console, status, tally):
            yield
        return
    with Live(
        console=console,
        get_renderable=lambda: _render(status, tally, clinics),
        refresh_per_second=4,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ):
        yield


def final_report(console: Console, status: Status, tally: Tally, clinics: ClinicSide) -> None:
    console.print(_header(status))
    console.print(_counter_table(tally, final=True))
    answered, delivered = tally.round_trips
    healthy = tally.healthy_latency
    console.print(
        f"end to end (message time -> the LPS has it), every clinic but the failing one: "
        f"p50 {_ms(healthy.percentile_ms(50))} ms, p99 {_ms(healthy.percentile_ms(99))} ms "
        f"over {healthy.count} deliveries",
        highlight=False,
    )
    console.print(
        f"task round trips: {answered} of {delivered} delivered tasks answered to the requester; "
        "task.status latency is from the clinic's answer to the requester's replies topic",
        highlight=False,
    )
    console.print(_vendors(clinics))
    for note in status.notes:
        console.print(note, style="yellow", highlight=False)
