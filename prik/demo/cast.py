"""Who takes part in the demo: the tenants, the clinics and their LPS vendors."""

from __future__ import annotations

import random
from dataclasses import dataclass

from contracts import DirectoryEntry, MessageType, Role, Tenant, Tenants

__all__ = [
    "LPS_VENDORS",
    "MUNICIPALITIES",
    "VIDEO_PLATFORM",
    "Cast",
    "Municipality",
    "demo_cast",
]

VIDEO_PLATFORM = "minlaege-video"
LPS_VENDORS = ("lps-xmo", "lps-novax", "lps-clinea")


@dataclass(frozen=True, slots=True)
class Municipality:
    tenant: str
    code: str
    name: str


MUNICIPALITIES = (
    Municipality("kommune-0101", "101", "København"),
    Municipality("kommune-0751", "751", "Aarhus"),
    Municipality("kommune-0461", "461", "Odense"),
)

_TOWNS = (
    "Vesterbro", "Nørrebro", "Amager", "Valby", "Hellerup", "Viby", "Risskov", "Tilst", "Dalum",
    "Bolbro", "Hjallerup", "Skagen", "Ribe", "Tønder", "Nakskov", "Rønne", "Svendborg", "Horsens",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cast:
    tenants: Tenants
    clinics: tuple[DirectoryEntry, ...]
    # A well-formed SOR code in no directory entry: messages to it are refused at routing.
    unknown_clinic: str

    def clinics_of(self, lps: str) -> list[DirectoryEntry]:
        return [c for c in self.clinics if c.lps == lps]


def _tenants() -> Tenants:
    video = Tenant(id=VIDEO_PLATFORM, role=Role.PRODUCER, may_send=frozenset({MessageType.VIDEO_QUEUE}))
    municipal_types = frozenset(
        {MessageType.REFERRAL_STATUS, MessageType.TASK_REQUEST, MessageType.TASK_STATUS}
    )
    municipalities = [
        Tenant(id=m.tenant, role=Role.PRODUCER, may_send=municipal_types, name=m.name) for m in MUNICIPALITIES
    ]
    vendors = [Tenant(id=lps, role=Role.LPS) for lps in LPS_VENDORS]
    return Tenants(tenant=(video, *municipalities, *vendors))


def demo_cast(clinics: int = 200, seed: int = 1) -> Cast:
    """The same `clinics` clinics every run (12-digit SOR codes), spread over the three LPS vendors."""
    rng = random.Random(seed)  # noqa: S311  made-up clinics, not secrets
    sors = sorted(rng.sample(range(100_000_000_000, 999_999_999_999), clinics + 1))
    entries = tuple(
        DirectoryEntry(
            sor=str(sor),
            lps=LPS_VENDORS[i % len(LPS_VENDORS)],
            name=f"Lægehuset {_TOWNS[i % len(_TOWNS)]} {i // len(_TOWNS) + 1}",
            ydernummer=f"{rng.randrange(1, 99_999):06d}",
        )
        for i, sor in enumerate(sors[:clinics])
    )
    return Cast(tenants=_tenants(), clinics=entries, unknown_clinic=str(sors[-1]))
