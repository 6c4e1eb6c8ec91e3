"""The ACL table of DESIGN.md as data, and what `prik topics apply` would change: pure, no Kafka."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import ConfigError, Tenants, Topics, parse_tenants
from contracts.tenants import Role, Tenant
from deploy.acls import Acl, acl_table, plan_access, users_of
from deploy.local_kafka import SCRAM_ANCHOR_USER

TOPICS = Topics("prik")


def tenants(*pairs: tuple[str, str]) -> Tenants:
    return Tenants(tenant=tuple(Tenant(id=i, role=Role(role)) for i, role in pairs))


WORLD = tenants(("kommune-01", "producer"), ("kommune-0101", "producer"), ("lps-xmo", "lps"))


def of(principal: str, table: frozenset[Acl]) -> set[str]:
    return {str(a) for a in table if a.principal == f"User:{principal}"}


def test_a_producer_tenant_gets_exactly_its_row() -> None:
    assert of("kommune-01", acl_table(TOPICS, WORLD)) == {
        "User:kommune-01 WRITE topic prik.ingress.kommune-01",
        "User:kommune-01 DESCRIBE topic prik.ingress.kommune-01",
        "User:kommune-01 READ topic prik.replies.kommune-01",
        "User:kommune-01 DESCRIBE topic prik.replies.kommune-01",
        "User:kommune-01 READ group kommune-01.*",
    }


def test_an_lps_gets_its_tenant_row_and_its_delivery_rights() -> None:
    assert of("lps-xmo", acl_table(TOPICS, WORLD)) == {
        "User:lps-xmo WRITE topic prik.ingress.lps-xmo",
        "User:lps-xmo DESCRIBE topic prik.ingress.lps-xmo",
        "User:lps-xmo READ topic prik.replies.lps-xmo",
        "User:lps-xmo DESCRIBE topic prik.replies.lps-xmo",
        "User:lps-xmo READ group lps-xmo.*",
        "User:lps-xmo READ topic prik.deliver.lps-xmo",
        "User:lps-xmo DESCRIBE topic prik.deliver.lps-xmo",
        "User:lps-xmo READ group prik-lps-xmo",
        "User:lps-xmo WRITE topic prik.dlq",
    }


def test_the_router_row_follows_the_prefix() -> None:
    assert of("router", acl_table(Topics("staging"), WORLD)) == {
        "User:router READ topic staging.ingress.*",
        "User:router READ group staging-router",
        "User:router WRITE topic staging.deliver.*",
        "User:router WRITE topic staging.replies.*",
        "User:router WRITE topic staging.dlq",
        "User:router READ topic staging.tasks",
        "User:router WRITE topic staging.tasks",
        "User:router READ topic staging.directory",
        "User:router WRITE transactional-id staging-router*",
        "User:router DESCRIBE transactional-id staging-router*",
    }


def test_nobody_gets_a_cluster_right_or_the_directory() -> None:
    """Idempotent producers need no IDEMPOTENT_WRITE: WRITE on a topic implies it (KIP-679, Kafka 2.8+)."""
    table = acl_table(TOPICS, WORLD)
    assert {a.resource_type for a in table} == {"TOPIC", "GROUP", "TRANSACTIONAL_ID"}
    assert not [a for a in table if a.name == TOPICS.directory and a.operation != "READ"]


def test_prefixed_only_where_the_table_says_star() -> None:
    prefixed = {(a.principal, a.name) for a in acl_table(TOPICS, WORLD) if a.pattern == "PREFIXED"}
    assert prefixed == {
        ("User:kommune-01", "kommune-01."),
        ("User:kommune-0101", "kommune-0101."),
        ("User:lps-xmo", "lps-xmo."),
        ("User:router", "prik.ingress."),
        ("User:router", "prik.deliver."),
        ("User:router", "prik.replies."),
        ("User:router", "prik-router"),
    }


@pytest.mark.parametrize("reserved", ["admin", "broker", "router"])
def test_a_tenant_named_like_a_super_user_is_refused(reserved: str) -> None:
    # Refused where the tenants file is read, before any ACL or user is planned.
    with pytest.raises(ConfigError, match=f"tenant id {reserved} is reserved"):
        parse_tenants(f'[[tenant]]\nid = "{reserved}"\nrole = "producer"\n')


def matches(acl: Acl, resource_type: str, name: str) -> bool:
    """Kafka's own rule for whether an ALLOW entry covers a resource."""
    if acl.resource_type != resource_type:
        return False
    return name.startswith(acl.name) if acl.pattern == "PREFIXED" else name == acl.name


def resources_of(topics: Topics, tenant: Tenant) -> list[tuple[str, str]]:
    """Every resource named after `tenant`: what no other tenant may touch."""
    return [
        ("TOPIC", topics.ingress(tenant.id)),
        ("TOPIC", topics.replies(tenant.id)),
        ("TOPIC", topics.deliver(tenant.id)),
        ("GROUP", f"{tenant.id}.anything"),
        ("GROUP", f"{topics.prefix}-{tenant.id}"),
    ]


tenant_ids = st.lists(
    # A small alphabet, so ids are often prefixes of one another.
    st.text(alphabet="ab0-", min_size=1, max_size=5).map(lambda s: f"k{s}"),
    min_size=2,
    max_size=6,
    unique=True,
).filter(lambda ids: all(len(i) >= 2 for i in ids))


@given(ids=tenant_ids, roles=st.lists(st.sampled_from(["producer", "lps"]), min_size=6, max_size=6))
def test_no_tenant_reaches_anything_named_after_another(ids: list[str], roles: list[str]) -> None:
    world = tenants(*zip(ids, roles, strict=False))
    table = acl_table(TOPICS, world)
    for tenant in world.tenant:
        mine = [a for a in table if a.principal == f"User:{tenant.id}"]
        for other in world.tenant:
            if other.id == tenant.id:
                continue
            for resource_type, name in resources_of(TOPICS, other):
                reached = [str(a) for a in mine if matches(a, resource_type, name)]
                assert not reached, f"{tenant.id} reaches {other.id}'s {name}: {reached}"


# -- plan_access --------------------------------------------------------------------


def test_a_world_that_matches_the_table_needs_nothing() -> None:
    table = acl_table(TOPICS, WORLD)
    plan = plan_access(TOPICS, WORLD, table, [*users_of(WORLD), "admin", "broker"])
    assert (plan.grant, plan.revoke, plan.drop_users) == ((), (), ())
    assert set(plan.unchanged) == table


def test_an_empty_cluster_gets_the_whole_table() -> None:
    plan = plan_access(TOPICS, WORLD, [], [])
    assert set(plan.grant) == acl_table(TOPICS, WORLD)


def test_a_dropped_tenant_loses_every_acl_it_had_and_its_user() -> None:
    before = tenants(*[(t.id, t.role.value) for t in WORLD.tenant], ("lps-gone", "lps"))
    existing = acl_table(TOPICS, before)
    plan = plan_access(TOPICS, WORLD, existing, [*users_of(before), "admin"])
    assert {str(a) for a in plan.revoke} == of("lps-gone", existing)
    assert plan.drop_users == ("lps-gone",)
    assert not plan.grant


def test_the_local_brokers_scram_anchor_is_never_a_tenant_and_never_removed() -> None:
    # Removing it would bring back the Kafka restart bug it is there for (deploy/local_kafka.py).
    named = tenants(*[(t.id, t.role.value) for t in WORLD.tenant], (SCRAM_ANCHOR_USER, "lps"))
    with pytest.raises(ConfigError, match=f"tenant id {SCRAM_ANCHOR_USER} is reserved in secure mode"):
        users_of(named)
    # Even with a grant on our topics (made by hand): the grant goes, the user stays.
    stray = Acl(f"User:{SCRAM_ANCHOR_USER}", "TOPIC", TOPICS.dlq, "LITERAL", "READ")
    existing_users = [*users_of(WORLD), SCRAM_ANCHOR_USER, "admin", "broker"]
    plan = plan_access(TOPICS, WORLD, {*acl_table(TOPICS, WORLD), stray}, existing_users)
    assert plan.revoke == (stray,)
    assert plan.drop_users == ()


def test_a_grant_on_our_topics_that_the_table_lacks_is_revoked() -> None:
    stray = Acl("User:*", "TOPIC", TOPICS.dlq, "LITERAL", "READ")
    widened = Acl("User:kommune-01", "TOPIC", "prik.ingress.", "PREFIXED", "WRITE")
    plan = plan_access(TOPICS, WORLD, {*acl_table(TOPICS, WORLD), stray, widened}, users_of(WORLD))
    assert set(plan.revoke) == {stray, widened}
    assert plan.drop_users == ()


def test_what_prik_does_not_manage_is_left_alone() -> None:
    others = {
        # Another prefix on the same cluster.
        Acl("User:router", "TOPIC", "staging.ingress.", "PREFIXED", "READ"),
        Acl("User:other-app", "TOPIC", "staging.ingress.other-app", "LITERAL", "WRITE"),
        # Super users, and a user prik never made.
        Acl("User:admin", "TOPIC", TOPICS.dlq, "LITERAL", "READ"),
        Acl("User:broker", "GROUP", "prik-router", "LITERAL", "READ"),
        Acl("User:someone", "GROUP", "someone.", "PREFIXED", "READ"),
    }
    plan = plan_access(TOPICS, WORLD, {*acl_table(TOPICS, WORLD), *others}, [*users_of(WORLD), "someone"])
    assert (plan.grant, plan.revoke, plan.drop_users) == ((), (), ())
