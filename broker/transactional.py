"""One transactional producer per input partition number, restartable.

Partition number p's transactions are all written under `<prefix>-router-p<p>`
(broker/assignor.py gives each number to one instance): starting the producer
fences any earlier incarnation with that id and settles its open transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import ProducerFenced

from contracts import KafkaError
from prik.kafka import kafka_errors, make_producer
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .assignor import transactional_id

__all__ = ["TransactionalProducers"]

_log = get_logger(__name__)
# How long a fenced number waits for the group to hand it out again (a rebalance
# comes within a session timeout) before this instance takes its id back anyway:
# only a transaction Kafka itself timed out fences an owner no rebalance follows.
FENCED_WAIT = 15.0


class TransactionalProducers:
    """The producers of the partition numbers this instance owns, by number."""

    def __init__(
        self,
        kafka: KafkaSettings,
        prefix: str,
        client_id: str,
        *,
        factory: Callable[[str], AIOKafkaProducer] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._prefix = prefix
        self._client_id = client_id
        self._factory = factory or self._make
        self._clock = clock
        self._by_number: dict[int, AIOKafkaProducer] = {}
        # Numbers another instance fenced, and until when this one leaves their ids alone.
        self._fenced_until: dict[int, float] = {}

    def numbers(self) -> list[int]:
        return list(self._by_number)

    async def own(self, numbers: set[int]) -> None:
        """Fresh producers for exactly `numbers`, each fencing its id's previous owner.

        Raises the first failure; the producers that did start are kept.
        """
        # The group has just said who owns what: earlier fences are settled.
        self._fenced_until.clear()
        await self.close([p for p in self._by_number if p not in numbers] + sorted(numbers))
        started = await asyncio.gather(*(self._new(p) for p in sorted(numbers)), return_exceptions=True)
        for p, producer in zip(sorted(numbers), started, strict=True):
            if not isinstance(producer, BaseException):
                self._by_number[p] = producer
        for result in started:
            if isinstance(result, BaseException):
                raise result

    async def healthy(self, number: int) -> AIOKafkaProducer:
        """Partition number `number`'s producer, rebuilt first if none is left or it is wedged.

        Raises a retriable `KafkaError` while the number is fenced (see `failed`).
        """
        until = self._fenced_until.get(number)
        if until is not None:
            if self._clock() < until:
                msg = (
                    f"partition number {number} was fenced by another router instance; waiting for the group"
                )
                raise KafkaError(msg, retriable=True)
            del self._fenced_until[number]
        producer = self._by_number.get(number)
        if producer is None or producer._txn_manager.is_fatal_error():  # noqa: SLF001 - no public check
            await self.replace(number)
            producer = self._by_number[number]
        return producer

    async def failed(self, number: int, exc: BaseException) -> None:
        """After a failed transaction: a fresh producer, unless another instance fenced this one.

        Fenced means the group gave the number to someone else while this instance
        was paused or cut off. Taking the id straight back would fence the rightful
        owner in turn, back and forth until this instance's consumer learns it was
        dropped; instead the number waits for the rebalance (`own`), or `FENCED_WAIT`.
        """
        if isinstance(exc, ProducerFenced):
            await self.close([number])
            self._fenced_until[number] = self._clock() + FENCED_WAIT
            _log.warning("router.fenced", partition_number=number, wait_seconds=FENCED_WAIT)
            return
        await self.replace(number)

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

    def _make(self, transactional: str) -> AIOKafkaProducer:
        return make_producer(self._kafka, transactional_id=transactional, client_id=self._client_id)

    async def _new(self, number: int) -> AIOKafkaProducer:
        producer = self._factory(transactional_id(self._prefix, number))
        try:
            with kafka_errors("starting the router's transactional producer"):
                # Fences any earlier incarnation with this id and aborts its open transaction.
                await producer.start()
        except KafkaError:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer
