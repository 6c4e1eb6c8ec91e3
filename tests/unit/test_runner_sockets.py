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
from pathlib import Path
from typing import Any

import pytest

from deploy.tls import ensure_tls
from prik.runner import open_sockets, run_to_end

# How long the peer keeps the client waiting for its close_notify.
_PEER_HOLDS = 0.3


@pytest.fixture
def slow_closing_tls_peer(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """A TLS server on loopback that answers a close only after `_PEER_HOLDS` seconds."""
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
            time.sleep(_PEER_HOLDS)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1], client_ctx
    finally:
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
    assert _unclosed_transport_warnings(run_to_end, port, ctx) == []
    # It waited for the peer, not for its whole allowance.
    assert time.monotonic() - started < 1.5


def test_run_gives_up_on_a_socket_nobody_closes() -> None:
    """A socket left open is a leak to report, not to wait on forever."""
    kept: list[socket.socket] = []

    async def leak() -> int:
        left, right = socket.socketpair()
        kept.append(right)
        await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, left)
        return open_sockets(asyncio.get_running_loop())

    started = time.monotonic()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert run_to_end(leak(), settle_within=0.2) == 1
        gc.collect()
    assert 0.2 <= time.monotonic() - started < 2.0
    kept[0].close()


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        msg = "kept"
        raise ValueError(msg)

    assert run_to_end(answer()) == 42
    with pytest.raises(ValueError, match="kept"):
        run_to_end(fail())
