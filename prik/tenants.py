"""Load the tenants file named by the command line or PRIK_TENANTS."""

from __future__ import annotations

from pathlib import Path

from contracts import ConfigError
from contracts.tenants import Tenants, parse_tenants

from .settings import Settings

__all__ = ["load_tenants", "tenants_from_settings"]


def load_tenants(path: Path) -> Tenants:
    """Read and parse a tenants TOML file; any fault is one ConfigError line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"tenants file {path} does not exist"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        msg = f"tenants file {path} cannot be read: {reason}"
        raise ConfigError(msg) from None
    return parse_tenants(text, origin=str(path))


def tenants_from_settings(settings: Settings, override: Path | None = None) -> Tenants:
    """The tenants of `--tenants FILE` when given, else of PRIK_TENANTS."""
    path = override or settings.tenants
    if path is None:
        msg = "no tenants file: set PRIK_TENANTS or pass --tenants"
        raise ConfigError(msg)
    return load_tenants(path)
