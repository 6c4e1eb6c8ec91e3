"""The LPS's side of the task round trip: answer a task through the consumer's task API.

An LPS answers `dk.prik.task.request.v1` by `POST {task api}/tasks/{task_id}/status`
with `{"task_id", "status", "reason"?, "business_status"?}`, signed the Standard
Webhooks way with its webhook secret and a fresh `webhook-id` per request (the
consumer refuses a reused one). The reference LPS uses `TaskAnswerer` to
acknowledge every task it accepts with `received`, after it has answered the webhook.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import aiohttp

from contracts import MessageType, PrikError, TaskStatus, codec

from .reference_lps import Received
from .signing import WebhookSecrets

__all__ = ["TaskAnswerer"]


class TaskAnswerer:
    """Answers tasks at the task API `base_url` (e.g. `http://127.0.0.1:8092`), signed with `secrets`.

    `on_receive` fits `ReferenceLps(on_receive=...)`: each task request accepted is
    answered `status` in the background, so the webhook's answer is not held up.
    """

    def __init__(
        self,
        base_url: str,
        secrets: str | Iterable[str] | WebhookSecrets,
        *,
        status: TaskStatus = TaskStatus.RECEIVED,
        timeout: float = 10.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._secrets = secrets if isinstance(secrets, WebhookSecrets) else WebhookSecrets(secrets)
        self._status = status
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._running: set[asyncio.Task[None]] = set()
        # HTTP status of each answer sent (or 0 when it got none), in order.
        self.results: list[int] = []

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def answer(
        self,
        task_id: str,
        status: TaskStatus,
        reason: str | None = None,
        business_status: str | None = None,
    ) -> int:
        """POST one signed answer; the HTTP status (202 accepted), or 0 when there was no answer."""
        if self._session is None:
            msg = "TaskAnswerer used before start()"
            raise RuntimeError(msg)
        fields = {
            "task_id": task_id,
            "status": status.value,
            "reason": reason,
            "business_status": business_status,
        }
        body = codec.dumps({name: value for name, value in fields.items() if value is not None})
        # A fresh id per request: the task API refuses a webhook-id it has already accepted.
        headers = {**self._secrets.sign(str(uuid.uuid4()), body), "content-type": "application/json"}
        try:
            async with self._session.post(
                f"{self._base}/tasks/{task_id}/status", data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                result = response.status
        except (TimeoutError, aiohttp.ClientError):
            result = 0
        self.results.append(result)
        return result

    def on_receive(self, item: Received) -> None:
        """Answer a task request `item` (any other message is left alone) once the webhook is answered."""
        if item.type != MessageType.TASK_REQUEST:
            return
        try:
            envelope = codec.loads(item.body)
        except PrikError:
            return
        data = envelope.get("data") if isinstance(envelope, dict) else None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if isinstance(task_id, str):
            task = asyncio.create_task(self._answer_quietly(task_id))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer_quietly(self, task_id: str) -> None:
        await self.answer(task_id, self._status)
