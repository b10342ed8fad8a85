"""Finding (issue 9, item 13): one unusable key in the Supabase project's JWKS made every
verification fail with 500 and dropped the good keys with it. Bad keys are skipped and logged
once; the rest keep verifying. A token header naming a kid that is not a string (any JSON
value can stand there) is a malformed token, not a 500.

Supabase's endpoint is faked as in tests/unit/test_auth.py (its helpers are reused); the keys,
PyJWT and the verifier are real.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.auth import TokenVerifier
from app.jwks import JwksCache
from tests.unit.test_auth import (
    EC_KEY,
    JWKS_URL,
    KID,
    MIN_INTERVAL,
    TTL,
    USER_ID,
    FakeClock,
    FakeJwksEndpoint,
    claims,
    ec_jwk,
    es256_token,
)

# Keys a JWKS may hold that PyJWT cannot take, each failing in its own way: a member of the
# wrong JSON type (TypeError), a curve nobody supports, members that are not base64url.
UNUSABLE: list[dict[str, Any]] = [
    {"kid": "alg-is-a-list", "kty": "RSA", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"},
    {"kid": "alg-is-an-object", "kty": "EC", "alg": {}, "crv": "P-256", "x": "AA", "y": "AA"},
    {"kid": "odd-curve", "kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"},
    {"kid": "not-base64", "kty": "OKP", "crv": "Ed25519", "x": "!!"},
]


@pytest.fixture
def endpoint() -> FakeJwksEndpoint:
    return FakeJwksEndpoint([*UNUSABLE, ec_jwk(EC_KEY, KID)])


@pytest.fixture
async def verifier(endpoint: FakeJwksEndpoint) -> AsyncIterator[tuple[TokenVerifier, FakeClock]]:
    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle)) as http:
        cache = JwksCache(JWKS_URL, http, ttl=TTL, min_refetch_interval=MIN_INTERVAL, clock=clock)
        yield TokenVerifier(hs256_secret=None, jwks=cache), clock


async def test_an_unusable_key_is_skipped_and_the_good_ones_keep_verifying(
    verifier: tuple[TokenVerifier, FakeClock],
    endpoint: FakeJwksEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens, clock = verifier
    caplog.set_level(logging.WARNING, logger="app.jwks")

    assert (await tokens.verify(es256_token(claims()))).user_id == USER_ID
    clock.advance(TTL)  # a refetch reads the same bad keys again
    assert (await tokens.verify(es256_token(claims()))).user_id == USER_ID

    assert endpoint.fetches == 2
    skipped = [r.getMessage() for r in caplog.records if r.name == "app.jwks"]
    for bad in UNUSABLE:
        # Named once: not on every refetch.
        assert sum(bad["kid"] in line for line in skipped) == 1, skipped
