"""Who a tenant is: the tenants file, re-read when it changes, and what a tenant may send."""

from __future__ import annotations

import time
from pathlib import Path

from contracts import ConfigError, ErrorStage, Message, Tenants, source_of
from prik.logs import get_logger
from prik.tenants import load_tenants

__all__ = ["TenantsFile", "admission_refusal"]

_log = get_logger(__name__)


class TenantsFile:
    """Callable returning the current tenants; checks the file at most once a second."""

    def __init__(self, path: Path, check_every: float = 1.0) -> None:
        self._path = path
        self._check_every = check_every
        self._tenants = load_tenants(path)
        self._mtime = path.stat().st_mtime_ns
        self._checked = time.monotonic()

    def __call__(self) -> Tenants:
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._checked = now
            self._reload_if_changed()
        return self._tenants

    def _reload_if_changed(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime == self._mtime:
                return
            self._tenants = load_tenants(self._path)
            self._mtime = mtime
            _log.info("tenants.reloaded", tenants=len(self._tenants.tenant))
        except (OSError, ConfigError) as exc:
            # Keep routing with the tenants we have; a half-saved file is common.
            _log.warning("tenants.reload_failed", error=str(exc))


def admission_refusal(message: Message, tenant_id: str, tenants: Tenants) -> tuple[ErrorStage, str] | None:
    """Why `tenant_id` may not send `message`, or None when it may.

    The message's `source` must be the tenant's own (`urn:prik:<id>`), and the
    tenant must be allowed to send its type. Pure: the router applies it to
    each ingress record, the HTTP ingress to each request before Kafka sees it.
    """
    if message.source != source_of(tenant_id):
        return ErrorStage.AUTHENTICATE, f"source must be {source_of(tenant_id)}"
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.allowed(message.type):
        return ErrorStage.AUTHORISE, f"tenant {tenant_id} may not send {message.type}"
    return None
