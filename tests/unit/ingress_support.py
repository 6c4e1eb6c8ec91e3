"""What the ingress's unit tests share: a fake Kafka side, a clock, logins, messages, the app."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from contracts import KafkaError, Message, Tenants, Topics, parse_tenants, to_binary
from producers import PublishResult, video_queue_notice
from producers.ingress import Credentials, Ingress, RateLimiter, make_app
from tests.hostile.corpus import CPRS
from tests.unit.clock import Clock

TENANTS = parse_tenants((Path(__file__).parent.parent / "data" / "tenants.toml").read_text())
VIDEO, KOMMUNE, LPS = "minlaege-video", "kommune-0101", "lps-xmo"
CLINIC = "123456789012"
PASSWORDS = {VIDEO: "video-secret", KOMMUNE: "kommune-secret", LPS: "lps-secret"}
TOPICS = Topics("t-unit")
PATH = "/v1/messages"
PROBLEM = "application/problem+json"
Client = TestClient[web.Request, web.Application]


class FakeSender:
    """Kafka's side: records what it was given; `fail` makes every send a Kafka failure."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.fail: KafkaError | None = None
        self.closed = False

    async def send(self, tenant: str, message: Message) -> PublishResult:
        if self.fail is not None:
            raise self.fail
        self.sent.append((tenant, message))
        return PublishResult(TOPICS.ingress(tenant), 0, len(self.sent) - 1, message.id)

    async def close(self) -> None:
        self.closed = True


def auth(tenant: str, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{tenant}:{password or PASSWORDS[tenant]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def notice(tenant: str = VIDEO, subject: str | None = None) -> Message:
    message = video_queue_notice(tenant, CLINIC, event="joined", queue_entry_id="q-1", cpr=CPRS[0])
    return message.model_copy(update={"subject": subject}) if subject else message


def binary_request(message: Message) -> tuple[dict[str, str], bytes]:
    body, headers = to_binary(message)
    http = {}
    for name, value in headers:
        http["Content-Type" if name == "content-type" else "ce-" + name.removeprefix("ce_")] = value.decode()
    return http, body


def write_credentials(tmp_path: Path) -> Path:
    """A 0600 password file per tenant of PASSWORDS, in a 0700 folder."""
    folder = tmp_path / "credentials"
    folder.mkdir(mode=0o700)
    for tenant, password in PASSWORDS.items():
        path = folder / f"{tenant}.password"
        path.write_text(password + "\n")
        path.chmod(0o600)
    return folder


def build(
    credentials: Path,
    sender: FakeSender,
    clock: Clock,
    *,
    burst: int = 1000,
    max_bytes: int = 64 * 1024,
    body_seconds: float = 30,
) -> web.Application:
    tenants = TENANTS

    def current() -> Tenants:
        return tenants

    ingress = Ingress(
        tenants=current,
        auth=Credentials(credentials, current, clock=clock),
        sender=sender,
        limiter=RateLimiter(10.0, burst, clock=clock),
        max_bytes=max_bytes,
        body_seconds=body_seconds,
    )
    return make_app(ingress)


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    assert body["status"] == status
    assert body["detail"]
    return body
