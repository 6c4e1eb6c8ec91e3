"""Identifier types: SOR, CPR, kommunekode, ydernummer, tenant id, https URL, UTC time.

Patterns use `[0-9]` rather than `\\d`: pydantic's regex engine treats `\\d` as any
Unicode digit, and "١٢٣" is not a SOR code.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from contracts.limits import MAX_YEAR, MIN_YEAR

SOR_PATTERN = r"^[0-9]{11,18}$"
KOMMUNEKODE_PATTERN = r"^[0-9]{3}$"
YDERNUMMER_PATTERN = r"^[0-9]{1,9}$"
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
CPR_PATTERN = r"^[0-9]{6}-?[0-9]{4}$"

KOMMUNEKODE_MIN = 101
KOMMUNEKODE_MAX = 860
HTTPS_URL_MAX_CHARS = 2048

TENANT_ID_RE = re.compile(TENANT_ID_PATTERN)

# Shared by every prik model: immutable, closed, and validation errors never echo input
# (a CPR in a failing message must not reach a log through str(ValidationError)).
STRICT_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# --- CPR ------------------------------------------------------------------------------

_CPR_RE = re.compile(r"[0-9]{6}-?[0-9]{4}")
# A CPR-shaped run not glued to more digits, e.g. inside free text.
_CPR_IN_TEXT_RE = re.compile(r"(?<![0-9])([0-9]{2})([0-9]{2})[0-9]{2}-?[0-9]{4}(?![0-9])")
# February allows 29: the century (hence leap year) is not knowable from DDMMYY alone.
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_REDACTED = "CPR(redacted)"


def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= month <= len(_DAYS_IN_MONTH) and 1 <= day <= _DAYS_IN_MONTH[month - 1]


def _normalise_cpr(value: str) -> str:
    # Messages here are fixed texts: the value itself must never appear in an error.
    if _CPR_RE.fullmatch(value) is None:
        msg = "CPR must be 10 digits (DDMMYYSSSS or DDMMYY-SSSS)"
        raise ValueError(msg)
    digits = value.replace("-", "")
    if not _valid_day_month(int(digits[0:2]), int(digits[2:4])):
        msg = "CPR must start with a valid day and month"
        raise ValueError(msg)
    return digits


def is_cpr(text: str) -> bool:
    """True when `text` as a whole is a CPR number (10 digits or DDMMYY-SSSS, valid day and month)."""
    return _CPR_RE.fullmatch(text) is not None and _valid_day_month(int(text[0:2]), int(text[2:4]))


def contains_cpr(text: str) -> bool:
    """True when `text` holds something shaped like a CPR number (valid day and month)."""
    # Most texts (content types, free text) hold no such run at all: one search in C says so.
    if _CPR_IN_TEXT_RE.search(text) is None:
        return False
    return any(_valid_day_month(int(m[1]), int(m[2])) for m in _CPR_IN_TEXT_RE.finditer(text))


class Cpr:
    """A Danish personal identification number that does not print itself.

    `str`, `repr` and `format` give a redaction; only `.value` and JSON
    serialisation (needed to deliver to the clinic) reveal the digits. No
    modulus-11 check: numbers without it have been issued since 2007.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", _normalise_cpr(value))

    @property
    def value(self) -> str:
        """The 10 digits; hand them only to the receiving clinic."""
        return self._value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        msg = "Cpr is immutable"
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> NoReturn:
        msg = "Cpr is immutable"
        raise AttributeError(msg)

    def __str__(self) -> str:
        return _REDACTED

    def __repr__(self) -> str:
        return _REDACTED

    def __format__(self, format_spec: str) -> str:
        return format(_REDACTED, format_spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cpr):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Cpr, self._value))

    def __reduce__(self) -> tuple[type[Cpr], tuple[str]]:
        return (Cpr, (self._value,))

    @classmethod
    def _validate(cls, value: object) -> Cpr:
        if isinstance(value, Cpr):
            return value
        if not isinstance(value, str):
            kind = "cpr_type"
            raise PydanticCustomError(kind, "CPR must be a string")
        try:
            return cls(value)
        except ValueError as exc:
            kind = "cpr_invalid"
            raise PydanticCustomError(kind, str(exc)) from None

    @staticmethod
    def _serialise(value: Cpr) -> str:
        return value._value

    @classmethod
    def __get_pydantic_core_schema__(
        cls,
        source: Any,  # noqa: ANN401  pydantic hook signature
        handler: GetCoreSchemaHandler,
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(cls._serialise, when_used="json"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": CPR_PATTERN,
            "description": "CPR number, 10 digits (DDMMYYSSSS or DDMMYY-SSSS); day and month must be valid",
        }


class Patient(BaseModel):
    """The patient a message is about."""

    model_config: ClassVar[ConfigDict] = STRICT_MODEL_CONFIG

    cpr: Cpr


# --- other identifiers -------------------------------------------------------------------


def _check_kommunekode(value: str) -> str:
    if not KOMMUNEKODE_MIN <= int(value) <= KOMMUNEKODE_MAX:
        kind = "kommunekode_range"
        raise PydanticCustomError(
            kind,
            f"kommunekode must be between {KOMMUNEKODE_MIN} and {KOMMUNEKODE_MAX}",
        )
    return value


# An https URL whose host is plain letters, digits, dots and dashes (no user, port or
# brackets): urlsplit finds that host for certain, so the common URL skips urlsplit (~1 us).
_PLAIN_HTTPS_RE = re.compile(r"https://[A-Za-z0-9.-]+(?:[/?#][!-~]*)?")


def _check_https(value: str) -> str:
    if _PLAIN_HTTPS_RE.fullmatch(value):
        return value
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        kind = "https_url"
        raise PydanticCustomError(kind, "URL must be an absolute https URL with a host")
    return value


Sor = Annotated[str, StringConstraints(pattern=SOR_PATTERN)]
"""A clinic's SOR code: 11-18 digits."""

Kommunekode = Annotated[
    str, StringConstraints(pattern=KOMMUNEKODE_PATTERN), AfterValidator(_check_kommunekode)
]
"""A municipality code: exactly 3 digits, 101-860."""

Ydernummer = Annotated[str, StringConstraints(pattern=YDERNUMMER_PATTERN)]
"""A practice's ydernummer: 1-9 digits, leading zeros kept."""

TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
"""A party's id, also its Kafka user name and the tail of its topics and source."""

# Visible ASCII only: an URL with spaces or raw non-ASCII is not one a clinic should open.
HttpsUrl = Annotated[
    str,
    StringConstraints(pattern=r"^https://[!-~]+$", max_length=HTTPS_URL_MAX_CHARS),
    AfterValidator(_check_https),
]
"""An absolute https URL, kept exactly as given."""


# --- time ------------------------------------------------------------------------------


_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _only_rfc3339_or_datetime(value: object) -> object:
    # Lax pydantic reads 1764149400 (and "1764149400") as a date-time; CloudEvents wants RFC 3339.
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_RE.fullmatch(value)):
        return value
    kind = "datetime_type"
    raise PydanticCustomError(kind, "Input should be an RFC 3339 date-time with a UTC offset or Z")


def _to_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    # Bounded so that expiry arithmetic (time + 15 min) can never overflow, and a
    # message "from 1970" or "until 9999" is refused rather than silently kept.
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        kind = "datetime_range"
        raise PydanticCustomError(kind, f"date-time must lie in the years {MIN_YEAR}-{MAX_YEAR}")
    return utc


def rfc3339(value: datetime) -> str:
    """Format an aware date-time as RFC 3339 in UTC with 'Z', microseconds kept."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# The shape `datetime.fromisoformat` reads to the same instant as pydantic: upper-case
# T and Z, at most 6 fractional digits, an offset within +-23:59. Anything else, and
# anything fromisoformat refuses (30 February), takes pydantic's way and its wording.
_PLAIN_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)


def _utc_datetime(value: object, handler: ValidatorFunctionWrapHandler) -> datetime:
    # One Python call per field instead of a before- and an after-validator around pydantic's parse.
    if isinstance(value, str) and _PLAIN_RFC3339_RE.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return _to_utc(parsed)
    return _to_utc(handler(_only_rfc3339_or_datetime(value)))


# Validation leaves every value in UTC, which pydantic-core writes as RFC 3339 with 'Z'
# itself (what `rfc3339` writes), without a Python call per field.
UtcDatetime = Annotated[AwareDatetime, WrapValidator(_utc_datetime)]
"""An aware date-time, held in UTC, written as RFC 3339 with 'Z'. Naive input is refused."""
