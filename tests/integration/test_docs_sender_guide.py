"""docs/sender-guide.md runs as written: its shell blocks in order, in one shell, against a real
broker, the router (`prik broker run`), the HTTP ingress (`prik ingress run`) and a clinic-side
consumer delivering to the reference LPS. The test sets only the environment the guide names."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from consumers import Backoff, ClinicConsumer, ReferenceLps, WebhookDeliverer

from .conftest import CLINIC, World
from .ingress_process import IngressProcess, write_passwords

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "sender-guide.md"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
TENANT = "kommune-0101"


def _shell_blocks() -> list[str]:
    return [
        body for lang, body in _BLOCK.findall(GUIDE.read_text(encoding="utf-8")) if lang in {"sh", "bash"}
    ]


def test_the_guide_has_its_runnable_blocks() -> None:
    blocks = "\n".join(_shell_blocks())
    for needle in ("application/cloudevents+json", "ce-specversion", "prik replies", "prik send raw", "kcat"):
        assert needle in blocks


@pytest.fixture
def ingress(world: World) -> Iterator[IngressProcess]:
    write_passwords(world.root / "credentials", list(world.tenants.ids))
    process = IngressProcess(world, world.root / "credentials")
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
async def consumer(world: World) -> AsyncIterator[ReferenceLps]:
    async with (
        ReferenceLps() as lps,
        ClinicConsumer(
            world.kafka,
            world.topics,
            "lps-xmo",
            WebhookDeliverer(lps.url, lps.secret, total_timeout=5),
            backoff=Backoff(base=0.2, cap=1.0),
            http_port=0,
            stop_grace=2.0,
        ),
    ):
        yield lps


@pytest.mark.usefixtures("router")
async def test_the_shell_blocks_run_as_written(
    world: World, ingress: IngressProcess, consumer: ReferenceLps, tmp_path: Path
) -> None:
    script = "set -euo pipefail\n" + "\n".join(_shell_blocks())
    env = {
        **world.env(),
        # `python` and `prik` as a sender who installed prik has them.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRIK_INGRESS_URL": ingress.url,
        "PRIK_TENANT": TENANT,
        "PRIK_PASSWORD_FILE": str(world.root / "credentials" / f"{TENANT}.password"),
        "CLINIC": CLINIC,
    }
    # An asyncio child: the consumer delivering the guide's messages runs on this loop.
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out_bytes, err_bytes = await asyncio.wait_for(shell.communicate(), 240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            shell.kill()
    out, err = out_bytes.decode(), err_bytes.decode()
    assert shell.returncode == 0, out + err
    # Two 202 answers, the 400 example, the receipt, the SDK's and the CLI's publishes.
    assert out.count('"topic":"') == 2, out
    # The refusal prints exactly what the guide shows.
    (shown,) = [line for line in GUIDE.read_text().splitlines() if '"title":"Bad Request"' in line]
    assert shown in out.splitlines()
    assert "HTTP 400" in out
    assert "outcome=delivered" in out
    assert (tmp_path / "prik-ingress-openapi.json").stat().st_size > 1000
    assert (tmp_path / "curl-auth.conf").stat().st_mode & 0o077 == 0
    # Everything sent reached the clinic: 2 over HTTP, 3 over Kafka (CLI, SDK, kcat).
    deadline = asyncio.get_running_loop().time() + 60
    while len(consumer.ids()) < 5 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110  the LPS offers no event
        await asyncio.sleep(0.3)
    assert len(consumer.ids()) == 5
