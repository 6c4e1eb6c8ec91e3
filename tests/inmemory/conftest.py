"""The in-memory tier's transports: every rule test runs through FastStream and against the bare router."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts import Topics
from tests.inmemory.harness import DirectHarness, Harness, faststream_harness


@pytest.fixture(params=["faststream", "direct"])
async def harness(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Harness]:
    prefix = f"mem-{unique}"
    if request.param == "direct":
        yield DirectHarness(Topics(prefix))
        return
    async with faststream_harness(prefix) as fs:
        yield fs


@pytest.fixture
def direct(unique: str) -> DirectHarness:
    return DirectHarness(Topics(f"mem-{unique}"))
