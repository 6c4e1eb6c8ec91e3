"""The one JSON codec of the project (orjson)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from contracts.errors import ParseError

_DUMP_OPTIONS = orjson.OPT_UTC_Z


def _default(obj: Any) -> Any:  # noqa: ANN401  orjson's fallback hook receives anything
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    msg = f"cannot encode {type(obj).__name__} as JSON"
    raise TypeError(msg)


def dumps(obj: Any, *, indent: bool = False) -> bytes:  # noqa: ANN401  any JSON-able value is accepted
    """Encode plain Python values (and pydantic models) as UTF-8 JSON, compact unless `indent`."""
    option = _DUMP_OPTIONS | (orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS if indent else 0)
    return orjson.dumps(obj, default=_default, option=option)


def dumps_log(obj: Any, **_: Any) -> str:  # noqa: ANN401  structlog hands over any event dict
    """structlog's serializer: like `dumps`, but anything unknown is written as its str()."""
    return orjson.dumps(obj, default=str, option=_DUMP_OPTIONS).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:  # noqa: ANN401  JSON may be any value
    """Decode JSON; failures raise `ParseError(stage="parse")` without echoing the input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson's own message can quote the offending text; only the position is safe to repeat.
        msg = f"not valid JSON (line {exc.lineno}, column {exc.colno})"
        raise ParseError(msg, stage="parse") from None
    except TypeError:
        msg = f"cannot decode JSON from {type(data).__name__}"
        raise ParseError(msg, stage="parse") from None
