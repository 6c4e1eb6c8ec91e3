"""The clinic directory: which LPS serves the clinic with a given SOR code."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.identifiers import STRICT_MODEL_CONFIG, Sor, TenantId, Ydernummer

__all__ = ["DirectoryEntry"]


class DirectoryEntry(BaseModel):
    """One clinic: keyed by `sor` on the compacted directory topic, the rest is the value."""

    model_config: ClassVar[ConfigDict] = STRICT_MODEL_CONFIG

    sor: Sor
    lps: TenantId
    name: str | None = Field(default=None, min_length=1, max_length=200)
    ydernummer: Ydernummer | None = None

    def value(self) -> dict[str, str | None]:
        """The record value: `{"lps": ..., "name": ..., "ydernummer": ...}` (the SOR is the key)."""
        return {"lps": self.lps, "name": self.name, "ydernummer": self.ydernummer}
