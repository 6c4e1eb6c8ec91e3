"""Errors as RFC 9457 problem details (`application/problem+json`), one reason each."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import web

from contracts import codec

__all__ = ["PROBLEM_CONTENT_TYPE", "problem"]

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    stage: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error answer. `detail` is prik's own words (a parse reason never quotes the payload)."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if stage is not None:
        body["stage"] = stage
    return web.Response(
        status=status,
        body=codec.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=dict(headers or {}),
    )
