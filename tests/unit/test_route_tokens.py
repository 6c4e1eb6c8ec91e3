"""Route tokens stay what every router version writes: routers of two versions meet in a rolling upgrade."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.tokens import RouteTokens

_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200)


@given(key=st.binary(min_size=16, max_size=64), message_id=_ids, source=_ids, lps=_ids)
def test_a_token_is_the_unpadded_urlsafe_base64_of_hmac_sha256(
    key: bytes, message_id: str, source: str, lps: str
) -> None:
    tokens = RouteTokens(key)
    mac = hmac.new(key, f"{message_id}\n{source}\n{lps}".encode(), hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(mac).rstrip(b"=")
    assert tokens.make(message_id, source, lps) == expected
    assert tokens.valid(expected, message_id, source, lps)
    # Any other field, key or token is refused.
    assert not tokens.valid(expected, message_id, source, lps + "x")
    assert not RouteTokens(key + b"x").valid(expected, message_id, source, lps)
    assert not tokens.valid(None, message_id, source, lps)


def test_a_short_key_is_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RouteTokens(b"short")
    assert "secret-key-value" not in repr(RouteTokens(b"secret-key-value-long-enough"))
