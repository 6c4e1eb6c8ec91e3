"""The parties: who may send what, parsed from the TOML tenants file."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .errors import ConfigError
from .identifiers import TenantId
from .messages import MessageType
from .topics import RESERVED_TENANT_IDS

__all__ = ["Role", "Tenant", "Tenants", "parse_tenants"]


class Role(StrEnum):
    PRODUCER = "producer"
    LPS = "lps"


# An LPS answers tasks and confirms deliveries; nothing else is its to send.
_LPS_SENDS = frozenset({MessageType.TASK_STATUS, MessageType.RECEIPT})


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: TenantId
    role: Role
    may_send: frozenset[MessageType] = frozenset()
    name: str | None = None

    def allowed(self, message_type: str) -> bool:
        if self.role is Role.LPS:
            return message_type in _LPS_SENDS or message_type in self.may_send
        return message_type in self.may_send

    @model_validator(mode="after")
    def _not_reserved(self) -> Self:
        # `urn:prik:router` vouches for the router's own receipts; no tenant may wear it.
        if self.id in RESERVED_TENANT_IDS:
            msg = f"tenant id {self.id} is reserved"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _producers_cannot_send_receipts(self) -> Self:
        if self.role is Role.PRODUCER and MessageType.RECEIPT in self.may_send:
            msg = f"tenant {self.id}: only an lps may send receipts"
            raise ValueError(msg)
        return self


class Tenants(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: tuple[Tenant, ...] = Field(default=())
    _by_id: dict[str, Tenant] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for t in self.tenant:
            if t.id in seen:
                msg = f"tenant {t.id} is declared twice"
                raise ValueError(msg)
            seen.add(t.id)
        return self

    def model_post_init(self, _context: object) -> None:
        # The router asks for a tenant on every message: a dict, not a scan.
        self._by_id = {t.id: t for t in self.tenant}

    def get(self, tenant_id: str) -> Tenant | None:
        # The dict from pydantic's private storage itself: `self._by_id` goes through
        # pydantic's attribute fallback (~4 µs a call, 13% of the router's CPU in py-spy).
        private = self.__pydantic_private__ or {}
        by_id: dict[str, Tenant] = private["_by_id"]
        return by_id.get(tenant_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tenant)

    @property
    def lps_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tenant if t.role is Role.LPS)


def parse_tenants(text: str, origin: str = "tenants file") -> Tenants:
    """Parse the TOML text of a tenants file; any fault is one ConfigError line."""
    try:
        raw = tomllib.loads(text)
        return Tenants.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{origin}: not valid TOML ({exc})"
        raise ConfigError(msg) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = f"{origin}: {where}: {first['msg']}" if where else f"{origin}: {first['msg']}"
        raise ConfigError(msg) from None
