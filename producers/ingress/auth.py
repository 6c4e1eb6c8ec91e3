"""HTTP Basic at the ingress: the user is a tenant id, the password that tenant's `DIR/<id>.password`.

The password files are the ones `prik topics apply --credentials DIR` keeps (in
secure mode they are also the tenants' Kafka passwords). A file is read again
when it changes, so a rotated password needs no restart. Passwords are compared
in constant time, and a request naming an unknown tenant costs the same
comparison, so timing tells nothing about which tenants exist.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts import ConfigError, Tenants
from deploy.credentials import read_password
from prik.logs import get_logger

__all__ = ["BASIC_CHALLENGE", "Credentials", "basic_login"]

BASIC_CHALLENGE = 'Basic realm="prik ingress", charset="UTF-8"'
# Longer than any tenant id plus any password prik makes; a longer header is not a login.
_MAX_AUTHORIZATION_CHARS = 1024
_DUMMY = b"\0" * 43

_log = get_logger(__name__)


def basic_login(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, or None when it is not one."""
    if not authorization or len(authorization) > _MAX_AUTHORIZATION_CHARS:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = text.partition(":")
    if not colon or not user:
        return None
    return user, password


@dataclass(slots=True)
class _Cached:
    password: bytes | None
    mtime_ns: int | None
    checked: float


class Credentials:
    """The tenants' ingress passwords, from a folder of `<id>.password` files.

    `tenants` is called on every login (the router's `TenantsFile` re-reads the
    tenants file when it changes); only a tenant in it may log in. Each
    password file is looked at again at most every `check_every` seconds.
    """

    def __init__(
        self,
        folder: Path,
        tenants: Callable[[], Tenants],
        *,
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not folder.is_dir():
            msg = f"credentials folder {folder} does not exist"
            raise ConfigError(msg)
        self.folder = folder
        self._tenants = tenants
        self._check_every = check_every
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant an `Authorization` header proves to be, or None."""
        login = basic_login(authorization)
        if login is None:
            return None
        user, given = login
        tenant = self._tenants().get(user)
        expected = self.password(tenant.id) if tenant is not None else None
        # One comparison whatever happened above: an unknown tenant takes as long as a wrong password.
        same = hmac.compare_digest(given.encode(), (expected or "").encode() or _DUMMY)
        if tenant is None or expected is None or not same:
            return None
        return tenant.id

    def password(self, tenant_id: str) -> str | None:
        """The tenant's current password, or None when it has no readable password file."""
        now = self._clock()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached.checked < self._check_every:
            return _text(cached.password)
        path = self.folder / f"{tenant_id}.password"
        try:
            info = path.stat()
        except OSError:
            self._cache[tenant_id] = _Cached(None, None, now)
            return None
        if cached is not None and cached.mtime_ns == info.st_mtime_ns:
            cached.checked = now
            return _text(cached.password)
        try:
            password: bytes | None = read_password(path).encode()
        except ConfigError as exc:
            _log.warning("ingress.password_unreadable", tenant=tenant_id, error=str(exc))
            password = None
        except UnicodeDecodeError:
            # read_password reads UTF-8 and lets this through: a broken file is no login, not a 500.
            _log.warning("ingress.password_unreadable", tenant=tenant_id, error="the file is not UTF-8")
            password = None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            _log.warning("ingress.password_file_exposed", tenant=tenant_id, hint="chmod 600")
        self._cache[tenant_id] = _Cached(password, info.st_mtime_ns, now)
        return _text(password)


def _text(password: bytes | None) -> str | None:
    return password.decode() if password is not None else None
