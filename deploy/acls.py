"""Tenant isolation on Kafka: SCRAM users and exactly the ACLs of DESIGN.md, from the tenants file.

`acl_table` is the table of DESIGN.md "Tenant isolation on Kafka" as data,
pure and unit-tested; `plan_access` compares it with what Kafka holds; and
`apply_access` makes Kafka hold exactly that, through confluent-kafka's admin
client (aiokafka's has no ACL or SCRAM calls).

Names are LITERAL except where the table says `*` (PREFIXED). Every PREFIXED
name ends in a separator (`.` or `-`) or belongs to the router, so a tenant
whose id is a prefix of another's (`kommune-01`, `kommune-0101`) gains nothing
on the other.

What `apply_access` may change (and nothing else): ALLOW ACLs on this prefix's
topics (`<prefix>.`), groups and transactional ids (`<prefix>-`), and the
tenant-group ACLs (`<id>.` PREFIXED) of the users it manages; SCRAM users of
the tenants and of `router`, and of a tenant dropped from the file (found by
its ACLs on this prefix's topics). The super users are never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without `as`, which mypy --strict does not count as exported.
from confluent_kafka.admin._acl import AclBinding, AclBindingFilter, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from contracts import ConfigError, KafkaError, NotAuthorisedError, Topics
from contracts.identifiers import TENANT_ID_RE
from contracts.tenants import Role, Tenants
from prik.kafka import (
    confluent_admin,
    confluent_errors,
    login_works,
    may_describe_cluster,
    translate_confluent,
)
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .credentials import password_file
from .local_kafka import BROKER_USER, SCRAM_ANCHOR_USER, SUPER_USER

__all__ = [
    "ROUTER_USER",
    "SUPER_USERS",
    "AccessPlan",
    "AccessReport",
    "Acl",
    "acl_table",
    "apply_access",
    "plan_access",
    "users_of",
]

ROUTER_USER = "router"
# Super users by configuration: an ACL on them would mean nothing, and removing
# their login would lock the operators (or the brokers themselves) out.
SUPER_USERS = frozenset({SUPER_USER, BROKER_USER})
# Users no tenant may be, and prik never grants to or removes: the super users and the
# local broker's SCRAM anchor (removing it would bring back the restart bug it prevents).
_RESERVED_USERS = SUPER_USERS | {SCRAM_ANCHOR_USER}

TOPIC = "TOPIC"
GROUP = "GROUP"
TRANSACTIONAL_ID = "TRANSACTIONAL_ID"
LITERAL = "LITERAL"
PREFIXED = "PREFIXED"
READ = "READ"
WRITE = "WRITE"
DESCRIBE = "DESCRIBE"

SCRAM_ITERATIONS = 8192
_LOGIN_CHECKS = 16
_SETTLE_ATTEMPTS = 40
_SETTLE_PAUSE = 0.25

_log = get_logger("prik.acls")


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """One ALLOW entry: `principal` may do `operation` on the resource, from any host."""

    principal: str
    resource_type: str
    name: str
    pattern: str
    operation: str
    host: str = "*"

    def __str__(self) -> str:
        star = "*" if self.pattern == PREFIXED else ""
        kind = self.resource_type.lower().replace("_", "-")
        where = "" if self.host == "*" else f" from {self.host}"
        return f"{self.principal} {self.operation} {kind} {self.name}{star}{where}"

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource_type],
            self.name,
            ResourcePatternType[self.pattern],
            self.principal,
            self.host,
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )

    def exact_filter(self) -> AclBindingFilter:
        return AclBindingFilter(
            ResourceType[self.resource_type],
            self.name,
            ResourcePatternType[self.pattern],
            self.principal,
            self.host,
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )


def _user(name: str) -> str:
    return f"User:{name}"


def users_of(tenants: Tenants) -> tuple[str, ...]:
    """Every SCRAM user prik keeps for `tenants`: one per tenant, and the router's."""
    for tenant in tenants.tenant:
        if tenant.id in SUPER_USERS:
            msg = f"tenant id {tenant.id} is reserved in secure mode: it is a Kafka super user"
            raise ConfigError(msg)
        if tenant.id in _RESERVED_USERS:
            msg = f"tenant id {tenant.id} is reserved in secure mode: it is the local broker's own user"
            raise ConfigError(msg)
    return (*tenants.ids, ROUTER_USER)


def acl_table(topics: Topics, tenants: Tenants) -> frozenset[Acl]:
    """The ACLs of DESIGN.md "Tenant isolation on Kafka", for `tenants` under `topics.prefix`."""
    users_of(tenants)
    acls: set[Acl] = set()

    def allow(user: str, resource_type: str, name: str, pattern: str, *operations: str) -> None:
        acls.update(Acl(_user(user), resource_type, name, pattern, op) for op in operations)

    for tenant in tenants.tenant:
        t = tenant.id
        allow(t, TOPIC, topics.ingress(t), LITERAL, WRITE, DESCRIBE)
        allow(t, TOPIC, topics.replies(t), LITERAL, READ, DESCRIBE)
        # The tenant's own consumer groups, `<id>.*`: the dot keeps `kommune-01.` off `kommune-0101.`.
        allow(t, GROUP, f"{t}.", PREFIXED, READ)
        if tenant.role is Role.LPS:
            allow(t, TOPIC, topics.deliver(t), LITERAL, READ, DESCRIBE)
            allow(t, GROUP, f"{topics.prefix}-{t}", LITERAL, READ)
            allow(t, TOPIC, topics.dlq, LITERAL, WRITE)

    p = topics.prefix
    allow(ROUTER_USER, TOPIC, f"{p}.ingress.", PREFIXED, READ)
    allow(ROUTER_USER, GROUP, f"{p}-router", LITERAL, READ)
    allow(ROUTER_USER, TOPIC, f"{p}.deliver.", PREFIXED, WRITE)
    allow(ROUTER_USER, TOPIC, f"{p}.replies.", PREFIXED, WRITE)
    allow(ROUTER_USER, TOPIC, topics.dlq, LITERAL, WRITE)
    allow(ROUTER_USER, TOPIC, topics.tasks, LITERAL, READ, WRITE)
    allow(ROUTER_USER, TOPIC, topics.directory, LITERAL, READ)
    # One transactional id per input partition number: `<prefix>-router-p<p>` (broker/assignor.py).
    allow(ROUTER_USER, TRANSACTIONAL_ID, f"{p}-router", PREFIXED, WRITE, DESCRIBE)
    return frozenset(acls)


# -- comparing with what Kafka holds ---------------------------------------------


def _user_name(principal: str) -> str | None:
    """The user name of a `User:<name>` principal prik could have made, else None."""
    if not principal.startswith("User:"):
        return None
    name = principal.removeprefix("User:")
    if name == ROUTER_USER or TENANT_ID_RE.fullmatch(name):
        return name
    return None


def _on_prefix(acl: Acl, topics: Topics) -> bool:
    """Whether `acl` names one of this prefix's topics, groups or transactional ids."""
    if acl.resource_type == TOPIC:
        return acl.name.startswith(f"{topics.prefix}.")
    if acl.resource_type in (GROUP, TRANSACTIONAL_ID):
        return acl.name.startswith(f"{topics.prefix}-")
    return False


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """What to change so that Kafka holds exactly the table."""

    grant: tuple[Acl, ...]
    revoke: tuple[Acl, ...]
    unchanged: tuple[Acl, ...]
    # Users prik made for a tenant that is no longer in the file.
    drop_users: tuple[str, ...]


def plan_access(
    topics: Topics, tenants: Tenants, existing_acls: Iterable[Acl], existing_users: Iterable[str]
) -> AccessPlan:
    """Compare the table with Kafka's ALLOW ACLs and SCRAM users; pure."""
    wanted = acl_table(topics, tenants)
    keep_users = set(users_of(tenants))
    existing = set(existing_acls)
    # A dropped tenant is known by the ACLs prik gave it on this prefix's topics.
    managed = set(keep_users)
    for acl in existing:
        name = _user_name(acl.principal)
        on_our_topic = acl.resource_type == TOPIC and _on_prefix(acl, topics)
        if name is not None and name not in _RESERVED_USERS and on_our_topic:
            managed.add(name)

    def ours(acl: Acl) -> bool:
        name = _user_name(acl.principal)
        if name in SUPER_USERS:
            return False
        if _on_prefix(acl, topics):
            return True
        own_groups = acl.resource_type == GROUP and acl.pattern == PREFIXED and acl.name == f"{name}."
        return name in managed and own_groups

    revoke = sorted(a for a in existing if ours(a) and a not in wanted)
    grant = sorted(wanted - existing)
    unchanged = sorted(wanted & existing)
    drop = sorted((managed - keep_users) & set(existing_users))
    return AccessPlan(tuple(grant), tuple(revoke), tuple(unchanged), tuple(drop))


# -- applying -------------------------------------------------------------------


@dataclass(slots=True)
class AccessReport:
    """What `apply_access` changed: one readable line per change; no password ever."""

    users_created: list[str] = field(default_factory=list)
    users_updated: list[str] = field(default_factory=list)
    users_removed: list[str] = field(default_factory=list)
    users_unchanged: list[str] = field(default_factory=list)
    granted: list[Acl] = field(default_factory=list)
    revoked: list[Acl] = field(default_factory=list)
    unchanged: list[Acl] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.users_created or self.users_updated or self.users_removed or self.granted or self.revoked
        )

    def lines(self) -> list[str]:
        out = [f"created user {u}" for u in self.users_created]
        out += [f"set a new password for user {u}" for u in self.users_updated]
        out += [f"removed user {u}" for u in self.users_removed]
        out += [f"granted {a}" for a in self.granted]
        out += [f"revoked {a}" for a in self.revoked]
        return out + self.notes

    def summary(self) -> str:
        return (
            f"users: created {len(self.users_created)}, updated {len(self.users_updated)}, "
            f"removed {len(self.users_removed)}, unchanged {len(self.users_unchanged)}; "
            f"ACLs: granted {len(self.granted)}, revoked {len(self.revoked)}, unchanged {len(self.unchanged)}"
        )


def _from_binding(binding: AclBinding) -> Acl | None:
    """Our view of an ALLOW binding of Kafka's; None for a DENY (it only ever takes rights away)."""
    if binding.permission_type != AclPermissionType.ALLOW:
        return None
    return Acl(
        binding.principal,
        _enum_name(binding.restype),
        binding.name,
        _enum_name(binding.resource_pattern_type),
        _enum_name(binding.operation),
        binding.host,
    )


def _enum_name(value: Enum | str | int) -> str:
    # confluent's stubs allow str and int too; a binding Kafka returned always holds the enum.
    return value.name if isinstance(value, Enum) else str(value)


def _result(future: Future[Any], doing: str, timeout: float) -> Any:  # noqa: ANN401 - confluent futures are untyped
    try:
        return future.result(timeout)
    except TimeoutError:
        msg = f"{doing}: Kafka did not answer within {timeout:.0f}s"
        raise KafkaError(msg, retriable=True) from None
    except Exception as exc:
        # A failed admin future carries a confluent KafkaException (or the KafkaError inside it).
        raise translate_confluent(exc, doing) from exc


_EVERY_ACL = AclBindingFilter(
    ResourceType.ANY,
    None,  # type: ignore[arg-type]  # None matches any name (confluent's docs); its stubs say str
    ResourcePatternType.ANY,
    None,  # type: ignore[arg-type]  # any principal, as above
    None,  # type: ignore[arg-type]  # any host, as above
    AclOperation.ANY,
    AclPermissionType.ANY,
)


def _describe(admin: AdminClient, timeout: float) -> tuple[set[Acl], Mapping[str, Any]]:
    """Every ALLOW ACL, and every SCRAM user with its credentials' descriptions."""
    with confluent_errors("reading Kafka's ACLs and users"):
        bindings = _result(admin.describe_acls(_EVERY_ACL, request_timeout=timeout), "reading ACLs", timeout)
        every_user = admin.describe_user_scram_credentials(request_timeout=timeout)
        # Asked for no user in particular, it answers one future for all of them.
        assert isinstance(every_user, Future)  # noqa: S101 - narrows confluent's union return type
        described: Mapping[str, Any] = _result(every_user, "reading SCRAM users", timeout)
    acls = {acl for acl in map(_from_binding, bindings) if acl is not None}
    return acls, described


def _upsert(admin: AdminClient, passwords: Mapping[str, str], timeout: float) -> None:
    if not passwords:
        return
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    with confluent_errors("setting SCRAM passwords"):
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in passwords.items()
        ]
        futures = admin.alter_user_scram_credentials(upserts, request_timeout=timeout)
        for user, future in futures.items():
            _result(future, f"setting the password of user {user}", timeout)


def _delete_users(
    admin: AdminClient, users: Iterable[str], existing: Mapping[str, Any], timeout: float
) -> None:
    deletions: list[UserScramCredentialAlteration] = [
        UserScramCredentialDeletion(user, info.mechanism)
        for user in users
        for info in existing[user].scram_credential_infos
    ]
    if not deletions:
        return
    with confluent_errors("removing SCRAM users"):
        for user, future in admin.alter_user_scram_credentials(deletions, request_timeout=timeout).items():
            _result(future, f"removing user {user}", timeout)


def _grant(admin: AdminClient, acls: Iterable[Acl], timeout: float) -> None:
    bindings = {acl.binding(): acl for acl in acls}
    if not bindings:
        return
    with confluent_errors("granting ACLs"):
        for binding, future in admin.create_acls(list(bindings), request_timeout=timeout).items():
            _result(future, f"granting {bindings[binding]}", timeout)


def _revoke(admin: AdminClient, acls: Iterable[Acl], timeout: float) -> None:
    filters = {acl.exact_filter(): acl for acl in acls}
    if not filters:
        return
    with confluent_errors("revoking ACLs"):
        for binding_filter, future in admin.delete_acls(list(filters), request_timeout=timeout).items():
            _result(future, f"revoking {filters[binding_filter]}", timeout)


def _as_user(kafka: KafkaSettings, user: str, password: str) -> KafkaSettings:
    return kafka.model_copy(update={"username": user, "password": SecretStr(password), "password_file": None})


async def _logins(kafka: KafkaSettings, passwords: Mapping[str, str]) -> dict[str, bool]:
    """Per user: whether Kafka accepts the password in its file (a handful of logins at a time)."""
    gate = asyncio.Semaphore(_LOGIN_CHECKS)

    async def check(user: str, password: str) -> tuple[str, bool]:
        async with gate:
            return user, await login_works(_as_user(kafka, user, password))

    return dict(await asyncio.gather(*(check(u, p) for u, p in passwords.items())))


async def _settle(
    kafka: KafkaSettings, admin: AdminClient, topics: Topics, tenants: Tenants, passwords: Mapping[str, str]
) -> None:
    """Wait until the broker enforces what was written: the table and every new login.

    Changes travel through the metadata log; a client that connects the moment
    `apply` returns must already find them in force.
    """
    for _ in range(_SETTLE_ATTEMPTS):
        acls, users = await asyncio.to_thread(_describe, admin, 30.0)
        plan = plan_access(topics, tenants, acls, users)
        logins = await _logins(kafka, passwords) if not (plan.grant or plan.revoke) else {}
        if not (plan.grant or plan.revoke) and all(logins.values()):
            return
        await asyncio.sleep(_SETTLE_PAUSE)
    msg = "Kafka does not show the users and ACLs just written: run `prik topics apply` again"
    raise KafkaError(msg, retriable=True)


async def apply_access(
    kafka: KafkaSettings, topics: Topics, tenants: Tenants, credentials: Path, request_timeout: float = 30.0
) -> AccessReport:
    """Make Kafka hold exactly the users and ACLs of the table for `tenants`.

    Each user's password is `credentials/<user>.password`, made (0600) when
    missing. Idempotent: a second run changes nothing. A tenant dropped from
    the file loses its ACLs, then its user and its password file.
    """
    users = users_of(tenants)
    if not kafka.sasl:
        msg = "users and ACLs are kept only with PRIK_KAFKA__SECURITY_PROTOCOL=SASL_SSL"
        raise ConfigError(msg)
    # librdkafka retries a refused login until its timeout and then says only "timed out".
    if not await login_works(kafka):
        msg = f"applying users and ACLs: Kafka refused the login of user {kafka.username} (wrong password?)"
        raise NotAuthorisedError(msg)
    if not await may_describe_cluster(kafka):
        msg = f"applying users and ACLs: user {kafka.username} may not read them (run it as admin)"
        raise NotAuthorisedError(msg)
    files = {user: password_file(credentials, user) for user in users}
    passwords = {user: f.read() for user, f in files.items()}
    report = AccessReport()
    report.notes += [
        f"{f.path} can be read by others than its owner: chmod 600 it" for f in files.values() if f.exposed
    ]
    admin = confluent_admin(kafka, request_timeout)
    acls, existing_users = await asyncio.to_thread(_describe, admin, request_timeout)
    plan = plan_access(topics, tenants, acls, existing_users)

    # Logins first: a user without ACLs can do nothing, but ACLs on a user who cannot log in are useless.
    present = {u: p for u, p in passwords.items() if u in existing_users}
    logins = await _logins(kafka, present)
    report.users_created = sorted(u for u in users if u not in existing_users)
    report.users_updated = sorted(u for u, ok in logins.items() if not ok)
    report.users_unchanged = sorted(u for u, ok in logins.items() if ok)
    changed = {u: passwords[u] for u in (*report.users_created, *report.users_updated)}
    await asyncio.to_thread(_upsert, admin, changed, request_timeout)

    await asyncio.to_thread(_grant, admin, plan.grant, request_timeout)
    # Revoked only after the grants: a tenant whose ACLs move never loses one it keeps.
    await asyncio.to_thread(_revoke, admin, plan.revoke, request_timeout)
    if plan.drop_users:
        await asyncio.to_thread(_delete_users, admin, plan.drop_users, existing_users, request_timeout)
        for user in plan.drop_users:
            (credentials / f"{user}.password").unlink(missing_ok=True)
    report.granted, report.revoked = list(plan.grant), list(plan.revoke)
    report.unchanged = list(plan.unchanged)
    report.users_removed = list(plan.drop_users)
    if report.changed:
        await _settle(kafka, admin, topics, tenants, changed)
    _log.info(
        "acls.applied",
        users_created=len(report.users_created),
        users_updated=len(report.users_updated),
        users_removed=len(report.users_removed),
        granted=len(report.granted),
        revoked=len(report.revoked),
    )
    return report
