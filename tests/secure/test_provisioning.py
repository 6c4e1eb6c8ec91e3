"""`prik topics apply` in secure mode: users and ACLs made, kept, changed and removed, on the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from contracts import NotAuthorisedError, Topics, parse_tenants
from deploy.acls import Acl, _grant, acl_table, apply_access
from deploy.topics import apply_topics
from prik.kafka import confluent_admin, login_works

from .conftest import ALLOWED, SecureWorld, started_producer, try_produce

pytestmark = [pytest.mark.kafka, pytest.mark.secure]


def small_world(u: str) -> tuple[Topics, str, str, str]:
    producer, lps = f"sender{u}", f"lps{u}"
    toml = (
        f'[[tenant]]\nid = "{producer}"\nrole = "producer"\n'
        'may_send = ["dk.prik.advisory.video-queue.v1"]\n\n'
        f'[[tenant]]\nid = "{lps}"\nrole = "lps"\n'
    )
    return Topics(f"p{u}"), producer, lps, toml


async def test_a_second_apply_changes_nothing(world: SecureWorld) -> None:
    report = await apply_access(world.admin(), world.topics, world.tenants, world.kafka.credentials)
    assert not report.changed
    assert report.lines() == []
    assert set(report.unchanged) == acl_table(world.topics, world.tenants)
    assert report.users_unchanged == sorted([*world.tenants.ids, "router"])
    assert report.summary().startswith("users: created 0, updated 0, removed 0")


async def test_a_dropped_tenant_loses_its_user_and_acls(world: SecureWorld) -> None:
    u = uuid.uuid4().hex[:6]
    topics, producer, lps, toml = small_world(u)
    both, only_producer = parse_tenants(toml), parse_tenants(toml.split("\n\n")[0])
    credentials = world.kafka.credentials
    await apply_topics(world.admin(), topics, both)
    first = await apply_access(world.admin(), topics, both, credentials)
    assert first.users_created == sorted([producer, lps])
    assert "router" in first.users_unchanged
    lps_kafka = world.as_user(lps)
    assert await login_works(lps_kafka)
    async with started_producer(lps_kafka) as as_lps:
        assert await try_produce(as_lps, topics.ingress(lps), b"before") == ALLOWED

    second = await apply_access(world.admin(), topics, only_producer, credentials)
    lps_acls = {a for a in acl_table(topics, both) if a.principal == f"User:{lps}"}
    assert second.users_removed == [lps]
    assert set(second.revoked) == lps_acls
    assert not second.granted
    assert second.users_unchanged == sorted([producer, "router"])
    assert not await login_works(
        lps_kafka.model_copy(update={"password": SecretStr("x"), "password_file": None})
    )
    # Its password file is gone with it: a tenant added again later gets a new one.
    assert not (credentials / f"{lps}.password").exists()

    third = await apply_access(world.admin(), topics, only_producer, credentials)
    assert not third.changed


async def test_a_new_password_in_the_file_is_taken_over(world: SecureWorld) -> None:
    u = uuid.uuid4().hex[:6]
    topics, producer, _lps, toml = small_world(u)
    tenants = parse_tenants(toml)
    credentials = world.kafka.credentials
    await apply_topics(world.admin(), topics, tenants)
    await apply_access(world.admin(), topics, tenants, credentials)
    old = world.as_user(producer).model_copy(
        update={"password": SecretStr((credentials / f"{producer}.password").read_text().strip())}
    )
    (credentials / f"{producer}.password").write_text("a-new-password-for-rotation\n")

    report = await apply_access(world.admin(), topics, tenants, credentials)
    assert report.users_updated == [producer]
    assert not report.granted
    assert not report.revoked
    assert await login_works(world.as_user(producer))
    assert not await login_works(old)


async def test_a_grant_made_by_hand_on_our_topics_is_revoked(world: SecureWorld) -> None:
    """The table is all there is: an extra ALLOW on a prik topic (here: anyone reads the DLQ) goes."""
    u = uuid.uuid4().hex[:6]
    topics, _producer, _lps, toml = small_world(u)
    tenants = parse_tenants(toml)
    await apply_topics(world.admin(), topics, tenants)
    await apply_access(world.admin(), topics, tenants, world.kafka.credentials)
    stray = Acl("User:*", "TOPIC", topics.dlq, "LITERAL", "READ")
    # As an operator granting by hand would.
    _grant(confluent_admin(world.admin()), [stray], 30)

    report = await apply_access(world.admin(), topics, tenants, world.kafka.credentials)
    assert report.revoked == [stray]
    assert report.lines() == [f"revoked User:* READ topic {topics.dlq}"]


async def test_only_a_super_user_may_apply(world: SecureWorld) -> None:
    lps = world.user("lps-x")
    with pytest.raises(NotAuthorisedError, match=f"user {lps} may not read them"):
        await apply_access(world.principal("lps-x"), world.topics, world.tenants, world.kafka.credentials)


def prik(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prik", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_the_command_line_as_an_operator_runs_it(world: SecureWorld, tmp_path: Path) -> None:
    u = uuid.uuid4().hex[:6]
    topics, producer, lps, toml = small_world(u)
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(toml)
    admin = world.admin()
    env = {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": admin.bootstrap,
        "PRIK_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PRIK_KAFKA__CA_FILE": str(admin.ca_file),
        "PRIK_KAFKA__USERNAME": "admin",
        "PRIK_KAFKA__PASSWORD_FILE": str(admin.password_file),
        "PRIK_TOPIC_PREFIX": topics.prefix,
    }
    credentials = world.kafka.credentials

    missing = prik(env, "topics", "apply", "--tenants", str(tenants_file))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        (
            "prik: error: SASL_SSL: pass --credentials DIR, "
            "the folder of the tenants' and the router's password files"
        )
    ]

    made = prik(env, "topics", "apply", "--tenants", str(tenants_file), "--credentials", str(credentials))
    assert made.returncode == 0, made.stderr
    assert f"created user {lps}" in made.stdout
    assert f"granted User:{producer} WRITE topic {topics.ingress(producer)}" in made.stdout
    again = prik(env, "topics", "apply", "--tenants", str(tenants_file), "--credentials", str(credentials))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1].startswith("users: created 0, updated 0, removed 0")

    secrets = [(credentials / f"{user}.password").read_text().strip() for user in (producer, lps, "router")]
    secrets.append(admin.secret() or "")
    for output in (made.stdout, made.stderr, again.stdout, again.stderr):
        assert not [s for s in secrets if s in output]
    assert oct((credentials / f"{lps}.password").stat().st_mode & 0o777) == "0o600"

    as_tenant = {
        **env,
        "PRIK_KAFKA__USERNAME": lps,
        "PRIK_KAFKA__PASSWORD_FILE": str(credentials / f"{lps}.password"),
    }
    refused = prik(
        as_tenant, "topics", "apply", "--tenants", str(tenants_file), "--credentials", str(tmp_path)
    )
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith("prik: error: ")
