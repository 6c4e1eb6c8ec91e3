"""`prik dashboard` in a real browser: headless Chromium, driven over the DevTools protocol.

The page holds an open event stream, so `chromium --dump-dom` would never return
(pitfall 19): the test starts Chromium with a DevTools port, talks CDP over a
websocket (aiohttp), and reads the DOM as the page rendered it, while a router,
an LPS consumer and real traffic run against the broker. A screenshot is kept
under the test's tmp dir; `PRIK_SAVE_SCREENSHOT=1` also copies it to docs/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest

from consumers import Backoff, CallbackDeliverer, ClinicConsumer, DeliveryRefused
from contracts import DirectoryEntry, Message
from deploy.directory import load_directory
from producers import Publisher, referral_status_notice, video_queue_notice

from .conftest import CLINIC, OTHER_CLINIC, RouterProcess, World

pytestmark = pytest.mark.kafka

VIDEO = "minlaege-video"
KOMMUNE = "kommune-0101"
LPS = "lps-xmo"
OTHER_LPS = "lps-other"  # no consumer runs for it: its lag and waiting clinic show
FAILING = "323456789012"  # lps-xmo's clinic whose deliveries are refused: a failing clinic
UNKNOWN = "999999999999"  # in no directory: rejected by the router
CPR = "0101701234"
REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 800


# -- a small DevTools-protocol client --------------------------------------------------


class Page:
    """One browser tab over CDP: commands by id, events kept for inspection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self._ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            waiter = self._pending.pop(message.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            elif "method" in message:
                self.events.append(message)
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the browser closed the DevTools connection"))

    async def send(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = waiter
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        answer = await asyncio.wait_for(waiter, timeout)
        if "error" in answer:
            msg = f"{method}: {answer['error']}"
            raise AssertionError(msg)
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            msg = f"page script failed: {result['exceptionDetails']}"
            raise AssertionError(msg)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """The value of `expression` once it is truthy (the page updates every tick)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                msg = f"the page never showed {expression}; body: {await self.text()}"
                raise AssertionError(msg)
            await asyncio.sleep(0.25)

    async def text(self) -> str:
        return str(await self.evaluate("document.body.innerText"))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()

    def errors(self) -> list[str]:
        """Script exceptions and console errors the page produced (a CSP refusal is one)."""
        found = []
        for event in self.events:
            if event["method"] == "Runtime.exceptionThrown":
                found.append(json.dumps(event["params"]["exceptionDetails"])[:500])
            elif event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
                found.append(event["params"]["entry"]["text"])
            elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                found.append(json.dumps(event["params"]["args"])[:500])
        return found


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        # `make test` installs it (the `tools` target); a missing browser is a failure, not a skip.
        pytest.fail("chromium is not installed: run `make tools` (apt-get install chromium)")
    return found


def start_chromium(profile: Path, log: BinaryIO) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            chromium_binary(),
            "--headless",
            "--no-sandbox",  # root in CI; the page is our own
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group: renderers and helpers are stopped with it, by its id.
        start_new_session=True,
    )


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Page]:
    """Headless Chromium on a free DevTools port (read from DevToolsActivePort), one blank tab."""
    profile = Path(tempfile.mkdtemp(prefix="prik-chromium-"))
    log_path = profile.parent / f"{profile.name}.log"
    log = log_path.open("wb")
    process = start_chromium(profile, log)
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().count("\n") >= 1):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start: {log_path.read_text(errors='replace')[-2000:]}")
            await asyncio.sleep(0.1)
        port = int(active.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            tab = next(t for t in targets if t["type"] == "page")
            ws = await http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
            page = Page(ws)
            try:
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                await page.send("Log.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=WIDTH,
                    height=HEIGHT,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
            finally:
                await page.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)
        log.close()
        log_path.unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)


# -- prik around it ---------------------------------------------------------------------


class DashboardProcess:
    """`prik dashboard --port 0` as an operator runs it; the URL from its first line."""

    def __init__(self, world: World) -> None:
        self.log = world.root / "dashboard.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prik", "dashboard", "--port", "0"],
            env=world.env(),
            stdout=subprocess.PIPE,
            stderr=self._out,
        )
        self.url = ""

    def wait_started(self, timeout: float = 60) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while b"dashboard at " not in line:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prik dashboard did not start: {self.log.read_text()[-2000:]}")
            line = self.process.stdout.readline()
        self.url = line.decode().split("dashboard at ", 1)[1].split()[0]
        return self.url

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._close()

    def _close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._out.close()


@pytest.fixture
async def failing_clinic(world: World) -> None:
    await load_directory(world.kafka, world.topics, [DirectoryEntry(sor=FAILING, lps=LPS)])


@pytest.fixture
async def consumer(world: World) -> AsyncIterator[ClinicConsumer]:
    """lps-xmo's consumer: accepts everything but what goes to the failing clinic."""

    async def deliver(message: Message) -> None:
        if message.recipient == FAILING:
            reason = "endpoint answered 404 Not Found"
            raise DeliveryRefused(reason)

    runtime = ClinicConsumer(
        world.kafka,
        world.topics,
        LPS,
        CallbackDeliverer(deliver),
        backoff=Backoff(base=0.2, cap=1.0),
        stop_grace=2.0,
    )
    async with runtime:
        yield runtime


async def send(
    world: World, count: int, *, to_failing: int = 0, to_other: int = 0, rejected: int = 0, pace: float = 0.0
) -> int:
    """Publish `count` video notices and half as many referral statuses to the working clinic,
    plus a few to the failing clinic, the LPS without a consumer and an unknown clinic,
    `pace` seconds apart. Returns how many messages were published."""
    sent = 0
    async with (
        Publisher(world.kafka, VIDEO, world.topics) as video,
        Publisher(world.kafka, KOMMUNE, world.topics) as kommune,
    ):
        clinics = [CLINIC] * count + [FAILING] * to_failing + [OTHER_CLINIC] * to_other + [UNKNOWN] * rejected
        for i, clinic in enumerate(clinics):
            await video.publish(
                video_queue_notice(
                    VIDEO,
                    clinic,
                    event="joined",
                    queue_entry_id=f"q-{i}",
                    cpr=CPR,
                    expires_in=timedelta(hours=1),
                )
            )
            sent += 1
            if clinic == CLINIC and i % 2 == 0:
                await kommune.publish(
                    referral_status_notice(
                        KOMMUNE,
                        clinic,
                        referral_id=f"r-{i}",
                        municipality_code="101",
                        offer="TeleKOL",
                        status="accepted",
                        cpr=CPR,
                    )
                )
                sent += 1
            await asyncio.sleep(pace)
    return sent


# JS run in the page: the numbers as the page shows them, read back from the DOM.
READ_DOM = """(() => {
  const rows = (selector, key) => Object.fromEntries([...document.querySelectorAll(selector)].map((row) => [
    row.dataset[key],
    Object.fromEntries([...row.querySelectorAll("[data-field]")].map((td) => [td.dataset.field, {
      text: td.textContent.trim(),
      value: td.dataset.value === undefined || td.dataset.value === "" ? null : Number(td.dataset.value),
      unit: td.querySelector(".unit") ? td.querySelector(".unit").textContent.trim() : null,
    }])),
  ]));
  const tile = (key) => {
    const node = document.querySelector(`[data-tile="${key}"] [data-field=value]`);
    return { text: node.textContent.trim(), unit: node.querySelector(".unit")?.textContent.trim() ?? null };
  };
  return {
    status: document.getElementById("status").dataset.state,
    statusText: document.getElementById("status-text").textContent,
    banner: document.getElementById("banner").hidden ? null : document.getElementById("banner").textContent,
    senders: rows("#senders tbody tr", "sender"),
    receivers: rows("#receivers tbody tr", "lps"),
    failing: [...document.querySelectorAll("#failing tbody tr")].map((r) => r.dataset.clinic),
    waiting: [...document.querySelectorAll("#waiting tbody tr")].map((r) => r.dataset.clinic),
    outcomes: Object.fromEntries([...document.querySelectorAll("#outcome-legend li")].map((li) => [
      li.dataset.outcome,
      { value: Number(li.dataset.value), unit: li.querySelector(".unit")?.textContent },
    ])),
    tiles: Object.fromEntries(["ingress", "deliver", "router", "dlq", "peak"].map((k) => [k, tile(k)])),
    headings: [...document.querySelectorAll("h1, h2")].map((h) => h.textContent.trim()),
    width: document.documentElement.scrollWidth,
  };
})()"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def delivered_to(dom: dict[str, Any], sender: str) -> float:
    return float(dom["senders"][sender]["delivered"]["value"])


# The unit each number column carries on the page.
UNITS = {"rate": "msg/s", "backlog": "records", "lag": "records", "delivered": "msg", "expired": "msg"}
HEADINGS = ("Senders", "LPS", "Outcomes", "Failing clinics", "Waiting clinics", "Dead-letter queue")


def check_layout_and_units(dom: dict[str, Any]) -> None:
    """Every sender and LPS by name, the headings, live status, and a unit on every number."""
    assert set(dom["senders"]) == {VIDEO, KOMMUNE}
    assert set(dom["receivers"]) == {LPS, OTHER_LPS}
    assert dom["status"] == "live", dom["statusText"]
    assert dom["banner"] is None
    for heading in HEADINGS:
        assert any(h.startswith(heading) for h in dom["headings"]), (heading, dom["headings"])
    for table in ("senders", "receivers"):
        for row in dom[table].values():
            for field, cell in row.items():
                if field in {"name", "trend"}:
                    continue
                assert cell["unit"], (table, field, cell)
                assert cell["unit"] == UNITS.get(field, cell["unit"]), (field, cell)
    assert dom["receivers"][OTHER_LPS]["oldest"]["unit"] in {"s", "min", "h"}
    assert {k: t["unit"] for k, t in dom["tiles"].items()} == {
        "ingress": "msg/s",
        "deliver": "msg/s",
        "router": "records",
        "dlq": "records",
        "peak": "msg/min",
    }
    assert all(o["unit"] == "msg" for o in dom["outcomes"].values())
    assert dom["width"] <= WIDTH, "the page scrolls sideways at 1280 px"


def check_first_batch(dom: dict[str, Any]) -> None:
    """12 + 6 delivered via lps-xmo, 3 dead letters at the failing clinic, 2 rejected (no such
    clinic), 4 waiting at lps-other, which has no consumer."""
    assert delivered_to(dom, VIDEO) == 12
    assert delivered_to(dom, KOMMUNE) == 6
    assert dom["senders"][VIDEO]["dead-lettered"]["value"] == 3
    assert dom["senders"][VIDEO]["rejected"]["value"] == 2
    assert dom["receivers"][LPS]["delivered"]["value"] == 18
    assert dom["receivers"][LPS]["dead-lettered"]["value"] == 3
    assert dom["receivers"][LPS]["consumers"]["value"] == 1
    assert dom["receivers"][OTHER_LPS]["consumers"]["value"] == 0
    # Counted records, not offsets: the router's transaction markers take offsets too.
    assert dom["receivers"][OTHER_LPS]["lag"]["value"] == 4
    assert dom["receivers"][LPS]["lag"]["value"] == 0
    assert dom["failing"] == [FAILING]
    assert OTHER_CLINIC in dom["waiting"]


async def check_no_cpr(page: Page, url: str) -> None:
    """No patient data anywhere on the page nor in what it is fed."""
    assert CPR not in await page.text()
    assert CPR not in await page.evaluate("document.documentElement.outerHTML")
    async with aiohttp.ClientSession() as http, http.get(url + "api/state") as response:
        state = await response.text()
    assert response.status == 200
    assert CPR not in state
    assert {s["id"] for s in json.loads(state)["senders"]} == {VIDEO, KOMMUNE}


async def test_dashboard_in_a_real_browser(
    world: World,
    failing_clinic: None,
    routers: Callable[..., RouterProcess],
    consumer: ClinicConsumer,
    tmp_path: Path,
) -> None:
    routers("test")
    first = await send(world, 12, to_failing=3, to_other=4, rejected=2)
    dashboard = DashboardProcess(world)
    try:
        url = dashboard.wait_started()
        async with browser() as page:
            await page.send("Page.navigate", url=url)
            # The first numbers: every message of the first batch has its outcome on the page,
            # and lps-other's clinic has waited long enough (10 s) to be listed.
            await page.wait_for(
                "(() => { const n = (o) => Number(document.querySelector("
                "`#outcome-legend li[data-outcome=${o}]`)?.dataset.value);"
                " return n('delivered') >= 18 && n('dead-lettered') >= 3 && n('rejected') >= 2"
                " && document.querySelector('#waiting tbody tr') !== null; })()"
            )
            before = await page.evaluate(READ_DOM)
            check_layout_and_units(before)
            check_first_batch(before)

            # Numbers change as traffic flows: send more while reading the page.
            more = asyncio.create_task(send(world, 40, pace=0.15))
            seen_rate = 0.0
            while not more.done():
                dom = await page.evaluate(READ_DOM)
                seen_rate = max(seen_rate, dom["senders"][VIDEO]["rate"]["value"] or 0.0)
                await asyncio.sleep(0.5)
            second = await more
            await page.wait_for(
                "document.querySelector('#senders tr[data-sender=\"minlaege-video\"] [data-field=delivered]')"
                "?.dataset.value >= 52"
            )
            after = await page.evaluate(READ_DOM)
            assert seen_rate > 0, "the sender's rate never moved while it sent"
            assert delivered_to(after, VIDEO) == 52
            assert delivered_to(after, KOMMUNE) == 26
            assert after["receivers"][LPS]["delivered"]["value"] == 78
            assert after["outcomes"]["delivered"]["value"] > before["outcomes"]["delivered"]["value"]
            assert after["tiles"]["peak"]["text"] != "\u2013msg/min", "no peak shown after traffic"
            assert page.errors() == [], page.errors()
            await check_no_cpr(page, url)
            shot = base64.b64decode((await page.send("Page.captureScreenshot", format="png"))["data"])
            assert png_size(shot) == (WIDTH, HEIGHT)
            (tmp_path / "dashboard.png").write_bytes(shot)
            if os.environ.get("PRIK_SAVE_SCREENSHOT") == "1":
                (REPO / "docs").mkdir(exist_ok=True)
                (REPO / "docs" / "dashboard.png").write_bytes(shot)

            # Graceful on SIGTERM with the page's event stream open: exit 0, quickly.
            assert dashboard.stop(timeout=15) == 0, dashboard.log.read_text()[-2000:]
            # The open page says its numbers are no longer live.
            await page.wait_for("document.getElementById('status').dataset.state === 'stale'", timeout=20)
        logged = dashboard.log.read_text()  # no CPR, no traceback in what it logged
        assert CPR not in logged
        assert "Traceback" not in logged
        assert (first, second) == (27, 60)
    finally:
        dashboard.kill()
