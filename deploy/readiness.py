"""Readiness of a broker means a metadata request succeeds, not an open port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError as AIOKafkaError

from contracts import KafkaError
from prik.settings import KafkaSettings

__all__ = ["probe_metadata", "wait_until_ready"]


async def probe_metadata(bootstrap: str, within: float = 2.0, kafka: KafkaSettings | None = None) -> bool:
    """Whether `bootstrap` answers a metadata request; `kafka` supplies TLS and SASL for a secure broker."""
    options = kafka.client_options() if kafka is not None else {}
    options["bootstrap_servers"] = bootstrap
    client = AIOKafkaClient(**options, request_timeout_ms=int(within * 1000))
    # A refused connection is the expected answer while a broker starts: not an error to log.
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(client.bootstrap(), within)
        return bool(client.cluster.brokers())
    except (AIOKafkaError, OSError, TimeoutError):
        return False
    finally:
        logger.setLevel(level)
        with contextlib.suppress(Exception):
            await client.close()


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
