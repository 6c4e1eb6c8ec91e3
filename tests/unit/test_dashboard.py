"""The dashboard without Kafka: rates, windows, backlogs, what may be shown, and the HTTP side."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts import Topics, parse_tenants, to_bytes
from contracts import headers as h
from prik.dashboard.backlog import Backlogs, Waiting
from prik.dashboard.collector import Collector, safe_text, sor_or_none
from prik.dashboard.model import DashboardState, Peak
from prik.dashboard.server import STATIC_DIR, _Latest, make_app
from prik.dashboard.window import Buckets, History, OffsetRates
from prik.settings import KafkaSettings
from producers import receipt

TENANTS = parse_tenants((Path(__file__).parent.parent / "data" / "tenants.toml").read_text())
TOPICS = Topics("t")
CPR = "0101701234"
SOR = "123456789012"


# -- windows ---------------------------------------------------------------------------


def test_offset_rates_need_two_samples_and_use_the_span() -> None:
    rates = OffsetRates(span=10)
    rates.add(0.0, {"a": 100})
    assert rates.rates() == {"a": None}
    rates.add(2.0, {"a": 110})
    assert rates.rates() == {"a": 5.0}
    for t in range(4, 21, 2):
        rates.add(float(t), {"a": 110 + 10 * t})
    # The baseline is the oldest sample at most 10 s old: t=10 (offset 210) to t=20 (offset 310).
    assert rates.rates() == {"a": 10.0}


def test_offset_rates_never_go_negative_and_new_keys_wait() -> None:
    rates = OffsetRates(span=10)
    rates.add(0.0, {"a": 100})
    rates.add(2.0, {"a": 10, "b": 5})  # "a" made anew: its offsets started again
    assert rates.rates() == {"a": 0.0, "b": None}


def test_buckets_rates_leave_out_the_running_second() -> None:
    buckets = Buckets(window=300)
    for second in range(990, 1000):
        buckets.add(second * 1000 + 500, "x", 3)
    buckets.add(1000_200, "x", 100)  # the second `now` is in: still arriving
    assert buckets.rates(1000.5, seconds=10) == {"x": 3.0}
    assert buckets.total(1000.5)["x"] == 130
    assert buckets.total(1000.5, seconds=5)["x"] == 3 * 4 + 100


def test_buckets_forget_what_left_the_window() -> None:
    buckets = Buckets(window=60)
    buckets.add(0, "old")
    buckets.add(100_000, "new")
    buckets.prune(120.0)
    assert buckets.total(200.0, seconds=1000) == {"new": 1}


def test_history_keeps_the_last_values_per_key() -> None:
    history = History(length=3)
    for value in (1.0, 2.0, None, 4.0):
        history.add({"a": value}, ["a", "b"])
    assert history.of("a") == [2.0, None, 4.0]
    assert history.of("b") == [None, None, None]
    assert history.of("missing") == []


# -- backlogs ---------------------------------------------------------------------------


def test_only_transaction_markers_behind_is_no_lag() -> None:
    backlogs = Backlogs(limit=100)
    # The group committed 10; offset 10 is the commit marker, the end is 11.
    assert backlogs.plan("p", committed=10, end=11) == 10
    backlogs.reached("p", 11)
    assert not backlogs.wants("p", 11)
    assert backlogs.lag("p", 10, 11) == (0, True)
    assert backlogs.oldest("p") is None


def test_backlog_counts_records_incrementally() -> None:
    backlogs = Backlogs(limit=100)
    assert backlogs.plan("p", committed=0, end=8) == 0
    # Records at 0, 2, 4, 6; markers at 1, 3, 5, 7.
    for offset in (0, 2, 4, 6):
        backlogs.took("p", Waiting(offset, 1_000 + offset, SOR))
    backlogs.reached("p", 8)
    assert backlogs.lag("p", 0, 8) == (4, True)
    assert backlogs.oldest("p") == Waiting(0, 1_000, SOR)
    # The group moves on past two records; two new ones arrive: only the new offsets are read.
    assert backlogs.plan("p", committed=4, end=12) == 8
    backlogs.took("p", Waiting(8, 2_000, SOR))
    backlogs.took("p", Waiting(10, 2_001, SOR))
    backlogs.took("p", Waiting(8, 2_000, SOR))  # handed back again after a seek: counted once
    backlogs.reached("p", 12)
    assert backlogs.lag("p", 4, 12) == (4, True)
    assert backlogs.oldest("p") == Waiting(4, 1_004, SOR)


def test_backlog_is_an_estimate_past_the_limit_and_counted_again_below() -> None:
    backlogs = Backlogs(limit=10)
    assert backlogs.plan("p", committed=0, end=50) == 0
    backlogs.took("p", Waiting(0, 5, None))
    assert not backlogs.wants("p", 50)  # the first waiting record is all an estimate needs
    assert backlogs.lag("p", 0, 50) == (50, False)
    assert backlogs.oldest("p") == Waiting(0, 5, None)
    # Caught up to within the limit: counted from the committed offset on.
    assert backlogs.plan("p", committed=45, end=50) == 45
    backlogs.reached("p", 50)
    assert backlogs.lag("p", 45, 50) == (0, True)


def test_backlog_starts_again_when_the_group_rewinds() -> None:
    backlogs = Backlogs(limit=100)
    backlogs.plan("p", committed=5, end=10)
    backlogs.took("p", Waiting(6, 1, SOR))
    backlogs.reached("p", 10)
    assert backlogs.plan("p", committed=0, end=10) == 0
    assert backlogs.lag("p", 0, 10) == (10, False)  # not read yet: the offsets say it


def test_backlog_not_read_to_the_end_is_an_estimate() -> None:
    backlogs = Backlogs(limit=100)
    backlogs.plan("p", committed=0, end=10)
    backlogs.took("p", Waiting(0, 1, SOR))
    assert backlogs.lag("p", 0, 10) == (10, False)


# -- what may be shown ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (SOR.encode(), SOR),
        (b"12345678901", "12345678901"),
        (b"123456789012345678", "123456789012345678"),
        (CPR.encode(), None),
        (b"010170-1234", None),
        (b"1234567890123456789", None),
        (b"12345678901a", None),
        ("١٢٣٤٥٦٧٨٩٠١٢".encode(), None),
        (b"", None),
        (None, None),
    ],
)
def test_only_sor_codes_are_shown(key: bytes | None, shown: str | None) -> None:
    assert sor_or_none(key) == shown


def test_header_text_is_one_short_line_without_cpr() -> None:
    assert safe_text(b"endpoint\nanswered\t404") == "endpoint answered 404"
    assert safe_text(f"patient {CPR} unknown".encode()) == "(withheld: looks like patient data)"
    assert safe_text(b"\x1b[31mred") == "?[31mred"
    assert len(safe_text(b"x" * 1000)) == 160
    assert safe_text(None) == ""


# -- records into numbers (no Kafka) ------------------------------------------------------


def collector(now: float = 1_700_000_000.0) -> Collector:
    return Collector(KafkaSettings(), TOPICS, TENANTS, clock=lambda: now)


OFFSETS = itertools.count()


def record(
    topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], ts: float
) -> object:
    return SimpleNamespace(
        topic=topic,
        partition=0,
        offset=next(OFFSETS),
        key=key,
        value=value,
        headers=headers,
        timestamp=int(ts * 1000),
    )


def letter(key: bytes | None, stage: str, reason: str, ts: float, lps: str = "lps-xmo") -> object:
    headers = [
        (h.ERROR_STAGE, stage.encode()),
        (h.ERROR_REASON, reason.encode()),
        (h.ORIGINAL_TOPIC, TOPICS.deliver(lps).encode()),
    ]
    return record(TOPICS.dlq, key=key, value=b"{}", headers=headers, ts=ts)


def test_failing_clinics_are_delivery_dead_letters_by_sor() -> None:
    now = 1_700_000_000.0
    c = collector(now)
    c._take(letter(SOR.encode(), "deliver", "endpoint answered 404", now - 30))
    c._take(letter(SOR.encode(), "deliver", f"patient {CPR} not found", now - 20))
    c._take(letter(CPR.encode(), "deliver", "a hostile key", now - 10))  # never shown
    c._take(
        letter(b"223456789012", "route", "no such clinic", now - 10)
    )  # the router's: not a clinic failing
    c._take(letter(b"323456789012", "deliver", "long ago", now - 3600))  # outside the window
    failing = c._failing_now(now)
    assert [(f.clinic, f.lps, f.dead_letters) for f in failing] == [(SOR, "lps-xmo", 2)]
    assert failing[0].last_reason == "(withheld: looks like patient data)"
    assert c._records.total(now)[("dlq", "all")] == 4
    # The letter with a hostile key counts; only its key is never shown.
    assert c._records.total(now)[("dlq", "deliver")] == 3
    assert len(c._dlq_offsets[0]) == 5  # every letter counts towards the depth


def test_receipts_count_as_outcomes_of_their_sender_and_lps() -> None:
    now = 1_700_000_000.0
    c = collector(now)
    for outcome, by in (("delivered", "lps-xmo"), ("dead-lettered", "lps-xmo"), ("delivered", "lps-other")):
        message = receipt(
            by,
            message_id="m-1",
            message_source="urn:prik:minlaege-video",
            message_type="dk.prik.advisory.video-queue.v1",
            outcome=outcome,
        )
        c._take(
            record(
                TOPICS.replies("minlaege-video"), key=b"m-1", value=to_bytes(message), headers=[], ts=now - 5
            )
        )
    c._take(record(TOPICS.replies("minlaege-video"), key=b"x", value=b"not json", headers=[], ts=now - 5))
    c._take(record(TOPICS.deliver("lps-xmo"), key=SOR.encode(), value=b"", headers=[], ts=now - 5))
    recent = c._records.total(now)
    assert recent[("outcome", "minlaege-video", "delivered")] == 2
    assert recent[("outcome", "minlaege-video", "dead-lettered")] == 1
    assert recent[("lps-outcome", "lps-xmo", "delivered")] == 1
    assert recent[("lps-outcome", "lps-other", "delivered")] == 1
    assert recent[("deliver", "lps-xmo")] == 1


async def test_the_last_peak_is_the_busiest_minute_accounting_found_in_24_hours() -> None:
    now = 1_700_000_000.0
    asked: list[datetime] = []
    answers: list[Peak | None] = []

    async def finder(since: datetime) -> Peak | None:
        asked.append(since)
        return answers.pop(0)

    def minute(ago: float, per_minute: int) -> Peak:
        return Peak(per_minute=per_minute, at=datetime.fromtimestamp(now - ago, UTC), tenant="kommune-0101")

    c = Collector(KafkaSettings(), TOPICS, TENANTS, clock=lambda: now, peak=finder)

    async def ask(at: float, answer: Peak | None) -> None:
        answers.append(answer)
        c._maybe_ask_peak(at)
        assert c._peak_task is not None
        await c._peak_task

    # The first read covers the whole 24 hours; later ones only the last minutes.
    await ask(now, minute(7200, 500))
    assert asked[-1] == datetime.fromtimestamp(now - 86400, UTC)
    await ask(now + 60, minute(0, 70))
    assert asked[-1] == datetime.fromtimestamp(now + 60 - 180, UTC)
    shown = c._last_peak(now + 60)
    assert shown is not None
    assert (shown.per_minute, shown.at) == (500, datetime.fromtimestamp(now - 7200, UTC))
    await ask(now + 120, minute(-60, 900))
    shown = c._last_peak(now + 120)
    assert shown is not None
    assert shown.per_minute == 900
    # A day later the old peaks have left the window.
    assert c._last_peak(now + 2 * 86400) is None
    # Not asked again before a minute has passed.
    c._maybe_ask_peak(now + 130)
    assert len(asked) == 3


# -- the HTTP side -------------------------------------------------------------------------


def state() -> DashboardState:
    return DashboardState(
        generated_at=datetime.now(UTC),
        prefix="t",
        bootstrap="k:9092",
        window_s=300,
        rate_window_s=10,
        tick_s=2,
    )


def test_the_page_ships_its_own_script_and_style() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    assert '<script src="/static/dashboard.js"' in page
    assert '<link rel="stylesheet" href="/static/dashboard.css">' in page
    for name in ("index.html", "dashboard.js", "dashboard.css"):
        text = (STATIC_DIR / name).read_text()
        # Nothing from outside: no CDN, no web font, no absolute URL to load.
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
        assert "@import" not in text
        assert "@font-face" not in text


async def test_http_routes() -> None:
    latest = _Latest()
    async with TestClient(TestServer(make_app(latest))) as client:
        response = await client.get("/api/state")
        assert response.status == 503
        latest.publish(state())
        response = await client.get("/api/state")
        assert response.status == 200
        assert (await response.json())["prefix"] == "t"
        page = await client.get("/")
        assert page.status == 200
        assert page.content_type == "text/html"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        script = await client.get("/static/dashboard.js")
        assert script.content_type == "text/javascript"
        for missing in ("/static/nothing.js", "/static/..%2Fserver.py", "/static/__init__.py"):
            assert (await client.get(missing)).status == 404


async def test_events_stream_each_new_state_and_end_on_close() -> None:
    latest = _Latest()
    latest.publish(state())
    async with TestClient(TestServer(make_app(latest))) as client:
        response = await client.get("/events")
        assert response.headers["Content-Type"] == "text/event-stream"
        lines: list[bytes] = []

        async def read_two() -> None:
            async for line in response.content:
                if line.startswith(b"data: "):
                    lines.append(line)
                    if len(lines) == 2:
                        return

        reader = asyncio.create_task(read_two())
        await asyncio.sleep(0.1)
        latest.publish(state().model_copy(update={"prefix": "u"}))
        await asyncio.wait_for(reader, 5)
        assert b'"prefix":"t"' in lines[0]
        assert b'"prefix":"u"' in lines[1]
        # Closing ends every open stream (else the server's shutdown would wait on them).
        latest.closing.set()
        assert (await asyncio.wait_for(response.content.read(), 5)).strip() == b""
