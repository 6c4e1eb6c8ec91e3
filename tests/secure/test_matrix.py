"""The ACL table of DESIGN.md, enforced by Kafka: every principal against every topic, group and id.

Each test runs one operation for one principal over every target and
compares the whole row with what the table allows, so a failure shows every
cell that differs. What is expected is written out here from the table by
hand, not computed by `deploy.acls`: the test must not share the code's mistakes.
"""

from __future__ import annotations

import pytest
from aiokafka.errors import ClusterAuthorizationFailedError

from .conftest import (
    ALLOWED,
    REFUSED,
    SecureWorld,
    read_values,
    started_consumer,
    started_producer,
    try_find_group,
    try_join,
    try_produce,
    try_read,
    try_transaction,
)

pytestmark = [pytest.mark.kafka, pytest.mark.secure]

TENANTS = ["video", "k01", "k0101", "lps-x", "lps-xmo"]
LPSES = ["lps-x", "lps-xmo"]
PRINCIPALS = [*TENANTS, "router", "stranger"]


def may_write(world: SecureWorld, who: str) -> set[str]:
    t = world.topics
    if who == "router":
        lps_ids = [world.ids[lps] for lps in LPSES]
        replies = {t.replies(world.ids[x]) for x in TENANTS}
        return {t.deliver(i) for i in lps_ids} | replies | {t.dlq, t.tasks}
    if who == "stranger":
        return set()
    own = {t.ingress(world.ids[who])}
    return own | {t.dlq} if who in LPSES else own


def may_read(world: SecureWorld, who: str) -> set[str]:
    t = world.topics
    if who == "router":
        return {t.ingress(world.ids[x]) for x in TENANTS} | {t.tasks, t.directory}
    if who == "stranger":
        return set()
    own = {t.replies(world.ids[who])}
    return own | {t.deliver(world.ids[who])} if who in LPSES else own


def row(world: SecureWorld, allowed: set[str], targets: list[str]) -> dict[str, str]:
    return {target: ALLOWED if target in allowed else REFUSED for target in targets}


def show(who: str, what: str, actual: dict[str, str]) -> None:
    # With `pytest -s`, the matrix as run.
    for target, outcome in actual.items():
        print(f"MATRIX {who:8} {what:11} {target:40} {outcome}")  # noqa: T201 - the report asks for it


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_produce(secure_world: SecureWorld, who: str) -> None:
    """Produce to every topic; a refused produce is then shown not to have landed (read as admin)."""
    topics = secure_world.every_topic()
    marker = f"matrix:{who}->"
    actual: dict[str, str] = {}
    try:
        async with started_producer(secure_world.principal(who)) as producer:
            for topic in topics:
                actual[topic] = await try_produce(producer, topic, f"{marker}{topic}".encode())
    except ClusterAuthorizationFailedError:
        # An idempotent producer needs WRITE on some topic (KIP-679); without any, it cannot even start.
        assert not may_write(secure_world, who)
        actual = dict.fromkeys(topics, REFUSED)
    show(who, "produce", actual)
    assert actual == row(secure_world, may_write(secure_world, who), topics)

    landed = await read_values(secure_world.admin(), topics)
    found = {topic for topic, values in landed.items() for v in values if v.decode().startswith(marker)}
    assert found == may_write(secure_world, who)


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_read(secure_world: SecureWorld, who: str) -> None:
    topics = secure_world.every_topic()
    actual: dict[str, str] = {}
    async with started_consumer(secure_world.principal(who)) as consumer:
        for topic in topics:
            actual[topic] = await try_read(consumer, topic)
    show(who, "read", actual)
    assert actual == row(secure_world, may_read(secure_world, who), topics)


def groups(world: SecureWorld) -> dict[str, str]:
    """Consumer groups to try -> the one principal allowed to join it (or `nobody`)."""
    p, ids = world.topics.prefix, world.ids
    return {
        f"{ids['video']}.replies": "video",
        f"{ids['k01']}.replies": "k01",
        f"{ids['k0101']}.replies": "k0101",
        f"{ids['lps-x']}.tasks": "lps-x",
        f"{ids['lps-xmo']}.tasks": "lps-xmo",
        f"{p}-{ids['lps-x']}": "lps-x",
        f"{p}-{ids['lps-xmo']}": "lps-xmo",
        f"{p}-router": "router",
        # The LPS group is LITERAL: nothing that merely starts with it.
        f"{p}-{ids['lps-x']}9": "nobody",
        # A tenant's groups are `<id>.*`, not `<id>*`.
        f"{ids['k01']}9.replies": "nobody",
    }


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_join_group(secure_world: SecureWorld, who: str) -> None:
    t = secure_world.topics
    table = groups(secure_world)
    kafka = secure_world.principal(who)
    if who == "stranger":
        # It may read no topic to subscribe to, so it only asks for each group's coordinator.
        actual = {g: await try_find_group(kafka, g) for g in table}
    else:
        # Subscribed to a topic the principal may read, so only the group decides.
        topic = t.tasks if who == "router" else t.replies(secure_world.ids[who])
        actual = {g: await try_join(kafka, topic, g) for g in table}
    show(who, "join-group", actual)
    assert actual == {g: ALLOWED if owner == who else REFUSED for g, owner in table.items()}


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_transactional_id(secure_world: SecureWorld, who: str) -> None:
    """Only the router may use `<prefix>-router*`; nobody else has any transactional id."""
    p = secure_world.topics.prefix
    ids = [f"{p}-router-{who}", f"{p}-{secure_world.user(who)}", f"{secure_world.user(who)}.tx"]
    actual = {i: await try_transaction(secure_world.principal(who), i) for i in ids}
    show(who, "txn-id", actual)
    assert actual == {i: ALLOWED if who == "router" and i.startswith(f"{p}-router") else REFUSED for i in ids}
