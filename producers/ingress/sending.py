"""One `Publisher` per tenant that sends through the ingress, started on its first message.

Each publishes onto that tenant's own ingress topic with the SDK's key and
headers (idempotent, acks=all). In secure mode (SASL_SSL) each logs in to
Kafka as the tenant itself, with the same password the tenant gave the
ingress, so Kafka's ACLs still decide who writes which ingress topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from contracts import KafkaError, Message, Topics
from prik.kafka import make_producer
from prik.settings import KafkaSettings
from producers.publisher import ProducerFactory, Publisher, PublishResult

__all__ = ["PublisherPool", "Sender"]


def _ingress_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    return make_producer(kafka, client_id="prik-ingress")


class Sender(Protocol):
    """What the ingress needs from Kafka: publish as a tenant, return once acknowledged."""

    async def send(self, tenant: str, message: Message) -> PublishResult: ...

    async def close(self) -> None: ...


class PublisherPool:
    """Publishers by tenant; `password_of` gives a tenant's Kafka password in secure mode."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        password_of: Callable[[str], str | None],
        *,
        producer_factory: ProducerFactory = _ingress_producer,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._password_of = password_of
        self._factory = producer_factory
        self._publishers: dict[str, Publisher] = {}
        # The password each tenant's publisher logged in with (secure mode).
        self._logged_in_with: dict[str, str] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._closed = False

    def _login(self, tenant: str) -> str | None:
        """The password the tenant's producer must log in with now (None in PLAINTEXT)."""
        if not self._kafka.sasl:
            return None
        password = self._password_of(tenant)
        if password is None:
            msg = f"no Kafka password for tenant {tenant}"
            raise KafkaError(msg)
        return password

    def _settings_for(self, password: str | None, tenant: str) -> KafkaSettings:
        if password is None:
            return self._kafka
        # model_copy does not validate: the password must already be a SecretStr.
        login = {"username": tenant, "password": SecretStr(password), "password_file": None}
        return self._kafka.model_copy(update=login)

    def _current(self, tenant: str) -> Publisher | None:
        """The tenant's publisher, unless its password file changed since it logged in."""
        publisher = self._publishers.get(tenant)
        if publisher is None or not self._kafka.sasl:
            return publisher
        return publisher if self._logged_in_with.get(tenant) == self._password_of(tenant) else None

    async def _publisher(self, tenant: str) -> Publisher:
        publisher = self._current(tenant)
        if publisher is not None:
            return publisher
        async with self._starting.setdefault(tenant, asyncio.Lock()):
            publisher = self._current(tenant)
            if publisher is not None:
                return publisher
            if self._closed:
                msg = "the ingress is shutting down"
                raise KafkaError(msg, retriable=True)
            # A rotated password: the old producer would fail at its next login (a broker
            # restart, a reconnect), so it is flushed and replaced now, as the HTTP login is.
            retired = self._publishers.pop(tenant, None)
            if retired is not None:
                await retired.stop()
            password = self._login(tenant)
            publisher = Publisher(
                self._settings_for(password, tenant), tenant, self._topics, producer_factory=self._factory
            )
            # A failed start is not kept: the next request tries again.
            await publisher.start()
            self._publishers[tenant] = publisher
            if password is not None:
                self._logged_in_with[tenant] = password
            return publisher

    async def send(self, tenant: str, message: Message) -> PublishResult:
        return await (await self._publisher(tenant)).publish(message)

    async def close(self) -> None:
        """Flush and close every publisher; a second call does nothing."""
        self._closed = True
        publishers, self._publishers = list(self._publishers.values()), {}
        errors = []
        for publisher in publishers:
            try:
                await publisher.stop()
            except KafkaError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
