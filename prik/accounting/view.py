"""The `prik usage` table (rich): senders, receivers and the peak, with units."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .usage import ReceiverUsage, SenderUsage, Usage

__all__ = ["human_bytes", "human_duration", "usage_table"]

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: int) -> str:
    """`1536` -> `1.5 KiB`; whole bytes below 1 KiB."""
    value = float(count)
    for unit in _BYTE_UNITS:
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{count:,} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{count:,} B"  # unreachable: the loop returns at its last unit


def human_duration(span: timedelta) -> str:
    """`24 h`, `15 min`, `90 s`, `7 d`: rounded, in the unit a person would say."""
    seconds = round(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    # Up to two days in hours: "24 h" reads better than "1 d" for the default window.
    for unit, size in (("h", 60), ("d", 1440)):
        amount = minutes / size
        if unit == "d" or amount < 48:
            return f"{amount:.0f} {unit}" if amount.is_integer() else f"{amount:.1f} {unit}"
    return f"{minutes} min"  # unreachable: the loop returns at its last unit


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _n(value: int) -> str:
    return f"{value:,}"


def _senders(usage: Usage) -> Table:
    span = usage.until - usage.since
    seconds = max(span.total_seconds(), 1.0)
    table = Table(title="Senders (by ingress topic)", title_justify="left")
    table.add_column("tenant", style="bold")
    table.add_column("messages", justify="right")
    table.add_column("avg msg/s", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("delivered", justify="right", style="green")
    table.add_column("expired", justify="right", style="yellow")
    table.add_column("rejected", justify="right", style="magenta")
    table.add_column("dead-lettered", justify="right", style="red")
    table.add_column("open", justify="right", style="dim")

    def cells(name: str, row: SenderUsage) -> list[str | Text]:
        return [
            # Text: tenant ids are plain, but rich must never read anything as markup.
            Text(name),
            _n(row.messages),
            f"{row.messages / seconds:,.2f}",
            human_bytes(row.bytes),
            _n(row.delivered),
            _n(row.expired),
            _n(row.rejected),
            _n(row.dead_lettered),
            _n(row.open),
        ]

    for name, row in sorted(usage.senders.items()):
        table.add_row(*cells(name, row))
    table.add_section()
    table.add_row(*cells("total", usage.total), style="bold")
    return table


def _receivers(usage: Usage) -> Table:
    table = Table(title="Receivers (LPS)", title_justify="left")
    table.add_column("lps", style="bold")
    table.add_column("delivered", justify="right", style="green")
    table.add_column("dead-lettered", justify="right", style="red")
    table.add_column("clinics", justify="right")

    def cells(name: str, row: ReceiverUsage) -> list[str | Text]:
        return [Text(name), _n(row.delivered), _n(row.dead_lettered), _n(row.clinics)]

    for name, row in sorted(usage.receivers.items()):
        table.add_row(*cells(name, row))
    if not usage.receivers:
        table.add_row(Text("(no lps in the tenants file)", style="dim"), "", "", "")
    return table


def _peak(usage: Usage) -> Text:
    peak = usage.peak
    text = Text("Peak: ", style="bold")
    if peak.at is None or peak.tenant is None:
        text.append("no ingress traffic in the window")
        return text
    text.append(f"{peak.per_minute:,} messages/min", style="bold")
    text.append(f" in the minute from {peak.at.strftime('%Y-%m-%d %H:%M UTC')}; most from ")
    text.append(peak.tenant, style="bold")
    text.append(f" ({peak.tenant_messages:,} messages, {peak.tenant_messages / 60:,.1f} msg/s)")
    return text


def usage_table(usage: Usage, *, heading: str = "prik usage") -> RenderableType:
    """The whole account of one window, as `prik usage` prints it."""
    span = usage.until - usage.since
    header = Text()
    header.append(heading, style="bold")
    header.append(f"  {_when(usage.since)} to {_when(usage.until)} ({human_duration(span)})")
    note = Text(
        "open: no final receipt yet (in flight, or waiting for a retry). "
        "An LPS's receipts are messages too, but get no receipt of their own.",
        style="dim",
    )
    return Group(header, _senders(usage), _receivers(usage), _peak(usage), note)
