"""Readiness of a broker means a metadata request succeeds, not an open port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import SaslAuthenticationFailed
from aiokafka.protocol.metadata import MetadataRequest

from contracts import KafkaError
from prik.kafka import kafka_connection
from prik.runner import run_to_end
from prik.settings import KafkaSettings

__all__ = ["probe_metadata", "wait_until_ready"]

# How long one probe of one address may take.
_PROBE_WITHIN = 2.0
# What a probe met: an answer naming brokers, a refused login, or neither (down, starting, timed out).
_ANSWERED, _REFUSED, _SILENT = "answered", "refused", "silent"


async def probe_metadata(
    bootstrap: str, within: float = _PROBE_WITHIN, kafka: KafkaSettings | None = None
) -> bool:
    """Whether a broker of `bootstrap` answers a metadata request; `kafka` supplies TLS and SASL.

    One connection per address, closed and waited for: a TLS connection left
    to close in the background outlives a probe's short event loop.
    """
    return await _probe(bootstrap, within, kafka) == _ANSWERED


async def _probe(bootstrap: str, within: float, kafka: KafkaSettings | None) -> str:
    options = kafka.client_options() if kafka is not None else {}
    options.pop("bootstrap_servers", None)
    outcome = _SILENT
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with kafka_connection(host, int(port), options, within) as conn:
                metadata = await asyncio.wait_for(conn.send(MetadataRequest([])), within)
        except SaslAuthenticationFailed:
            outcome = _REFUSED
            continue
        except (AIOKafkaError, OSError, TimeoutError):
            continue
        if metadata.brokers:
            return _ANSWERED
    return outcome


def wait_until_ready(
    bootstrap: str,
    timeout: float,
    alive: Callable[[], bool] | None = None,
    kafka: KafkaSettings | None = None,
) -> None:
    """Block until `bootstrap` answers a metadata request, or raise KafkaError.

    A broker that answers TLS but refuses `kafka`'s login until the deadline is
    said to do so: "did not answer" sent people looking for a hung process.
    """
    deadline = time.monotonic() + timeout
    outcome = _SILENT
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            msg = f"the Kafka broker for {bootstrap} exited during start-up (see its server.log)"
            raise KafkaError(msg)
        outcome = run_to_end(_probe(bootstrap, _PROBE_WITHIN, kafka))
        if outcome == _ANSWERED:
            return
        time.sleep(0.25)
    if outcome == _REFUSED and kafka is not None:
        msg = (
            f"the Kafka broker at {bootstrap} answers but refused the login of user {kafka.username} "
            f"for {timeout:.0f}s (see its server.log)"
        )
        raise KafkaError(msg)
    msg = f"the Kafka broker at {bootstrap} did not answer within {timeout:.0f}s"
    raise KafkaError(msg, retriable=True)
