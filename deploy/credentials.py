"""Password files: made with `secrets`, mode 0600, read back; their contents never printed or logged."""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from contracts import ConfigError

__all__ = ["PasswordFile", "new_password", "password_file", "read_password", "write_private"]

# 256 bits; URL-safe characters need no quoting in a JAAS line or a StorageTool argument.
_PASSWORD_BYTES = 32


def new_password() -> str:
    return secrets.token_urlsafe(_PASSWORD_BYTES)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # O_CREAT's mode applies only to a new file; an existing one is narrowed too.
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read_password(path: Path) -> str:
    """The first line of a password file; a missing, unreadable or empty one is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"password file {path} cannot be read: {exc.strerror or type(exc).__name__}"
        raise ConfigError(msg) from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        msg = f"password file {path} is empty"
        raise ConfigError(msg)
    return password


@dataclass(frozen=True, slots=True)
class PasswordFile:
    """One user's password, where it lives, and whether this run made it."""

    user: str
    path: Path
    created: bool
    # True when group or others may read the file: worth telling the operator.
    exposed: bool

    def read(self) -> str:
        return read_password(self.path)


def password_file(folder: Path, user: str) -> PasswordFile:
    """`folder/<user>.password`, made with a fresh random password when missing."""
    path = folder / f"{user}.password"
    if path.exists():
        mode = path.stat().st_mode
        exposed = bool(mode & (stat.S_IRWXG | stat.S_IRWXO))
        read_password(path)
        return PasswordFile(user, path, created=False, exposed=exposed)
    # A new folder is the owner's alone; an existing one is left as the operator made it.
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, new_password() + "\n")
    return PasswordFile(user, path, created=True, exposed=False)
