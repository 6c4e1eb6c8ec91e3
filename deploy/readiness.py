"""Readiness of a broker means a metadata request succeeds, not an open port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.protocol.metadata import MetadataRequest

from contracts import KafkaError
from prik.kafka import kafka_connection
from prik.settings import KafkaSettings

__all__ = ["probe_metadata", "wait_until_ready"]


async def probe_metadata(bootstrap: str, within: float = 2.0, kafka: KafkaSettings | None = None) -> bool:
    """Whether a broker of `bootstrap` answers a metadata request; `kafka` supplies TLS and SASL.

    One connection per address, closed and waited for: a TLS connection left
    to close in the background outlives a probe's short event loop.
    """
    options = kafka.client_options() if kafka is not None else {}
    options.pop("bootstrap_servers", None)
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with kafka_connection(host, int(port), options, within) as conn:
                metadata = await asyncio.wait_for(conn.send(MetadataRequest([])), within)
        except (AIOKafkaError, OSError, TimeoutError):
            continue
        if metadata.brokers:
            return True
    return False


def wait_until_ready(
    bootstrap: str,
    timeout: float,
    alive: Callable[[], bool] | None = None,
    kafka: KafkaSettings | None = None,
) -> None:
    """Block until `bootstrap` answers a metadata request, or raise KafkaError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            msg = f"the Kafka broker for {bootstrap} exited during start-up (see its server.log)"
            raise KafkaError(msg)
        if asyncio.run(probe_metadata(bootstrap, kafka=kafka)):
            return
        time.sleep(0.25)
    msg = f"the Kafka broker at {bootstrap} did not answer within {timeout:.0f}s"
    raise KafkaError(msg, retriable=True)
