"""`prik.runner.run_to_end` lets a TLS socket that is still closing finish before the loop ends.

The CI flake this answers: an admin client over TLS in `asyncio.run` left
aiokafka's bootstrap socket mid-close, and the loop's end turned it into an
"unclosed transport" ResourceWarning.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from deploy.tls import ensure_tls
from prik.runner import closing_sockets, run_to_end

# How long the peer keeps the client waiting for its close_notify, unless a test says otherwise.
_PEER_HOLDS = 0.3
# Far above any wait here, so "returned before it" cannot be a matter of a busy machine.
_PATIENT = 30.0


@pytest.fixture
def slow_closing_tls_peer(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[int, ssl.SSLContext]]:
    """A TLS server on loopback that answers a close only after `_PEER_HOLDS` seconds (or `request.param`)."""
    holds = float(getattr(request, "param", _PEER_HOLDS))
    released = threading.Event()
    files = ensure_tls(tmp_path / "tls")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.keystore)
    client_ctx = ssl.create_default_context(cafile=str(files.ca_cert))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            while tls.recv(1024):
                pass
            released.wait(holds)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1], client_ctx
    finally:
        released.set()
        server.join(timeout=10)
        listener.close()


async def _connect_then_close_without_waiting(port: int, ctx: ssl.SSLContext) -> None:
    """What aiokafka does with its bootstrap connection: close it and move on."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    writer.close()


def _unclosed_transport_warnings(runs: Callable[[Any], object], port: int, ctx: ssl.SSLContext) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs(_connect_then_close_without_waiting(port, ctx))
        gc.collect()
    return [str(w.message) for w in caught if "unclosed transport" in str(w.message)]


def test_plain_asyncio_run_leaves_the_closing_tls_socket_behind(
    slow_closing_tls_peer: tuple[int, ssl.SSLContext],
) -> None:
    """The case is real: without waiting, the loop ends under the socket."""
    port, ctx = slow_closing_tls_peer
    assert _unclosed_transport_warnings(asyncio.run, port, ctx)


def test_run_waits_for_the_closing_tls_socket(slow_closing_tls_peer: tuple[int, ssl.SSLContext]) -> None:
    port, ctx = slow_closing_tls_peer
    started = time.monotonic()
    assert _unclosed_transport_warnings(partial(run_to_end, settle_within=_PATIENT), port, ctx) == []
    # It waited for the peer, not for its whole allowance.
    assert time.monotonic() - started < _PATIENT / 3


@pytest.mark.parametrize("slow_closing_tls_peer", [_PATIENT], indirect=True)
def test_run_gives_up_on_a_peer_slower_than_its_allowance(
    slow_closing_tls_peer: tuple[int, ssl.SSLContext],
) -> None:
    port, ctx = slow_closing_tls_peer
    started = time.monotonic()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        run_to_end(_connect_then_close_without_waiting(port, ctx), settle_within=0.1)
        gc.collect()
    assert time.monotonic() - started < _PATIENT / 3


def test_run_does_not_wait_for_a_socket_nobody_closes() -> None:
    """A socket left open is a leak to report, not a close to wait for: no time is spent on it."""
    left, right = socket.socketpair()

    async def leak() -> int:
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(asyncio.Protocol, left)
        return closing_sockets(loop)

    try:
        started = time.monotonic()
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            assert run_to_end(leak(), settle_within=_PATIENT) == 0
            gc.collect()
        assert time.monotonic() - started < _PATIENT / 3
    finally:
        left.close()
        right.close()


def test_a_task_left_running_is_cancelled_first_and_its_tls_close_waited_for(
    slow_closing_tls_peer: tuple[int, ssl.SSLContext],
) -> None:
    """A client never stopped: its task closes its connection when cancelled, as `asyncio.run` cancels it."""
    port, ctx = slow_closing_tls_peer
    left_running: list[asyncio.Task[None]] = []

    async def client(ready: asyncio.Event) -> None:
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            writer.close()

    async def main() -> None:
        ready = asyncio.Event()
        left_running.append(asyncio.get_running_loop().create_task(client(ready)))
        await ready.wait()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_to_end(main())
        # The cancelled task's traceback holds the connection: let it go, so its socket is judged here.
        left_running.clear()
        gc.collect()
    assert [w for w in caught if "unclosed transport" in str(w.message)] == []


def test_an_error_of_a_task_left_running_is_reported_not_swallowed() -> None:
    seen: list[BaseException | None] = []
    left_running: list[asyncio.Task[None]] = []

    async def fails_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            msg = "while stopping"
            raise RuntimeError(msg)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context.get("exception")))
        left_running.append(loop.create_task(fails_when_cancelled()))
        await asyncio.sleep(0)

    run_to_end(main())
    assert [str(e) for e in seen] == ["while stopping"]


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        msg = "kept"
        raise ValueError(msg)

    assert run_to_end(answer()) == 42
    with pytest.raises(ValueError, match="kept"):
        run_to_end(fail())
