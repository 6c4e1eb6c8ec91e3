"""One transactional producer per input partition number, restartable.

Partition number p's transactions are all written under `<prefix>-router-p<p>`
(broker/assignor.py gives each number to one instance): starting the producer
fences any earlier incarnation with that id and settles its open transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError

from contracts import KafkaError
from prik.kafka import kafka_errors, make_producer
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .assignor import transactional_id

__all__ = ["TransactionalProducers"]

_log = get_logger(__name__)


class TransactionalProducers:
    """The producers of the partition numbers this instance owns, by number."""

    def __init__(self, kafka: KafkaSettings, prefix: str, client_id: str) -> None:
        self._kafka = kafka
        self._prefix = prefix
        self._client_id = client_id
        self._by_number: dict[int, AIOKafkaProducer] = {}

    def numbers(self) -> list[int]:
        return list(self._by_number)

    async def own(self, numbers: set[int]) -> None:
        """Fresh producers for exactly `numbers`, each fencing its id's previous owner.

        Raises the first failure; the producers that did start are kept.
        """
        await self.close([p for p in self._by_number if p not in numbers] + sorted(numbers))
        started = await asyncio.gather(*(self._new(p) for p in sorted(numbers)), return_exceptions=True)
        for p, producer in zip(sorted(numbers), started, strict=True):
            if isinstance(producer, AIOKafkaProducer):
                self._by_number[p] = producer
        for result in started:
            if isinstance(result, BaseException):
                raise result

    async def healthy(self, number: int) -> AIOKafkaProducer:
        """Partition number `number`'s producer, rebuilt first if none is left or it is wedged."""
        producer = self._by_number.get(number)
        if producer is None or producer._txn_manager.is_fatal_error():  # noqa: SLF001 - no public check
            await self.replace(number)
            producer = self._by_number[number]
        return producer

    async def replace(self, number: int) -> None:
        # A wedged producer only recovers as a new one (aiokafka #1017). If the
        # new one fails to start, none is left and the next batch tries again.
        await self.close([number])
        self._by_number[number] = await self._new(number)

    async def close(self, numbers: Iterable[int], within: float = 10.0) -> None:
        closing = [self._by_number.pop(p) for p in dict.fromkeys(numbers) if p in self._by_number]
        for producer in closing:
            try:
                await asyncio.wait_for(producer.stop(), within)
            except (TimeoutError, AIOKafkaError) as exc:
                _log.warning("router.close_failed", client="producer", error=type(exc).__name__)

    async def _new(self, number: int) -> AIOKafkaProducer:
        producer = make_producer(
            self._kafka,
            transactional_id=transactional_id(self._prefix, number),
            client_id=self._client_id,
        )
        try:
            with kafka_errors("starting the router's transactional producer"):
                # Fences any earlier incarnation with this id and aborts its open transaction.
                await producer.start()
        except KafkaError:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer
