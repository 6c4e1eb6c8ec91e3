"""The task-answer round trip: a stand-in for the consumer's task API that the LPS calls back.

An LPS answers a task by `POST {task api}/tasks/{task_id}/status`, signed the
Standard Webhooks way with its webhook secret (`consumers.http_api`). During a
conformance run, this stand-in listens where `--task-api` says, and it *is* the
consumer's own server (`RuntimeHttp`): the same signature check, replay guard and
body rules. Only what happens to an accepted answer differs: instead of going to
Kafka, it is checked against the task this run sent (the first answer to a new
task must move it from `requested`, i.e. be `received`) and recorded.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from consumers.errors import TaskAnswerRefused
from consumers.http_api import RuntimeHttp
from consumers.receipts import task_answer
from consumers.signing import WebhookSecrets
from consumers.stats import HealthReport
from contracts import ConfigError, TaskStatus, TaskStatusUpdate
from contracts.errors import TransitionError
from contracts.tasks import INITIAL_STATUS, check_transition

__all__ = ["TaskAnswerSeen", "TaskApiStandIn", "parse_task_api"]

# The tenant the stand-in builds answers as: never published, only validated.
_LPS = "lps-conformance"


@dataclass(frozen=True, slots=True)
class TaskAnswerSeen:
    """An answer the stand-in accepted: the task and the status the LPS gave it."""

    task_id: str
    status: TaskStatus


def parse_task_api(url: str) -> tuple[str, int]:
    """(host, port) to listen on for `--task-api http://HOST:PORT`; a ConfigError otherwise."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        parsed = None
    if (
        parsed is None
        or parsed.scheme != "http"
        or not parsed.host
        or parsed.explicit_port is None
        or parsed.path not in {"", "/"}
        or parsed.query_string
        or parsed.user is not None
    ):
        msg = "--task-api must be http://HOST:PORT (where this run listens for the LPS's task answers)"
        raise ConfigError(msg)
    return parsed.host, parsed.explicit_port


class _Recording(RuntimeHttp):
    """The consumer's HTTP server, keeping every refusal it answers (to explain a failed round trip)."""

    refusals: list[str]

    async def _post_task_status(self, request: web.Request) -> web.Response:
        response = await super()._post_task_status(request)
        if response.status >= 300:
            text = response.text or ""
            self.refusals.append(f"HTTP {response.status} {text}".strip())
        return response


class TaskApiStandIn:
    """Listens on `host:port` for task answers signed with `secrets`; `expect` a task, `wait_for` it."""

    def __init__(self, host: str, port: int, secrets: WebhookSecrets) -> None:
        self.refusals: list[str] = []
        self.answers: list[TaskAnswerSeen] = []
        self._tasks: dict[uuid.UUID, TaskStatus] = {}
        self._changed = asyncio.Event()
        self._http = _Recording(
            host=host,
            port=port,
            secrets=secrets,
            health=lambda: HealthReport(True, "conformance stand-in", 0, None),
            metrics=dict,
            answer=self._answer,
        )
        self._http.refusals = self.refusals

    @property
    def port(self) -> int | None:
        return self._http.port

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    def expect(self, task_id: uuid.UUID) -> None:
        """A task request this run is about to send: answers to it are accepted from now on."""
        self._tasks[task_id] = INITIAL_STATUS

    async def wait_for(self, task_id: uuid.UUID, timeout: float) -> TaskAnswerSeen | None:  # noqa: ASYNC109  a plain bound reads best here
        """The first accepted answer to `task_id`, or None when none came within `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for seen in self.answers:
                        if seen.task_id == str(task_id):
                            return seen
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return None

    async def _answer(
        self, task_id: str, status: str, reason: str | None, business_status: str | None
    ) -> TaskStatusUpdate:
        update = task_answer(_LPS, task_id, status, reason, business_status)
        task = update.data.task_id
        current = self._tasks.get(task)
        if current is None:
            msg = "no such task: this conformance run sent no task with that id"
            raise TaskAnswerRefused(msg)
        new = TaskStatus(update.data.status)
        try:
            check_transition(current, new)
        except TransitionError as exc:
            raise TaskAnswerRefused(str(exc)) from None
        self._tasks[task] = new
        self.answers.append(TaskAnswerSeen(str(task), new))
        self._changed.set()
        return update
