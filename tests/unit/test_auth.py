"""TokenVerifier and JwksCache against real keys and a faked Supabase JWKS endpoint.

Supabase Auth cannot run here, so its JWKS endpoint is served through ``httpx.MockTransport``;
everything else (PyJWT, cryptography, the keys) is real.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from app.auth import AuthError, Principal, TokenVerifier, mint_hs256_token
from app.jwks import JwksCache, parse_jwks, refetch_due

SECRET = "super-secret-jwt-token-with-at-least-32-characters"
JWKS_URL = "https://xyz.supabase.co/auth/v1/.well-known/jwks.json"
KID = "ec-key-1"
USER_ID = uuid.UUID("6f1c2d8e-3b4a-4c5d-9e8f-0a1b2c3d4e5f")
TTL = 600.0
MIN_INTERVAL = 30.0

EC_KEY = ec.generate_private_key(ec.SECP256R1())


# --- helpers ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeJwksEndpoint:
    """Supabase's ``/auth/v1/.well-known/jwks.json``, with knobs for outages."""

    def __init__(self, keys: Iterable[dict[str, Any]]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.status = 200
        self.body: bytes | None = None
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.body is not None:
            return httpx.Response(self.status, content=self.body)
        return httpx.Response(self.status, json={"keys": self.keys})


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    return {**jwk, "kid": kid, "use": "sig", **extra}


def claims(*, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": str(USER_ID),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "email": "ada@example.com",
        "app_metadata": {"provider": "email"},
        "user_metadata": {},
    }
    base.update(overrides)
    for name in drop:
        del base[name]
    return base


def es256_token(payload: dict[str, Any], *, kid: str = KID, key: Any = EC_KEY) -> str:
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})


def hs256_token(payload: dict[str, Any], *, secret: str = SECRET, kid: str | None = None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64url(json.dumps(obj).encode())


def hand_signed_hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: PyJWT refuses to use a PEM as an HMAC secret even to sign."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


async def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as info:
        await verifier.verify(token)
    assert not isinstance(info.value, jwt.PyJWTError)
    return info.value.reason


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint() -> FakeJwksEndpoint:
    return FakeJwksEndpoint([ec_jwk(EC_KEY, KID)])


@pytest.fixture
async def http(endpoint: FakeJwksEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle)) as client:
        yield client


@pytest.fixture
def cache(http: httpx.AsyncClient, clock: FakeClock) -> JwksCache:
    return JwksCache(JWKS_URL, http, ttl=TTL, min_refetch_interval=MIN_INTERVAL, clock=clock)


@pytest.fixture
def verifier(cache: JwksCache) -> TokenVerifier:
    """Both key sources configured, as in a Supabase project migrating off the legacy secret."""
    return TokenVerifier(hs256_secret=SECRET, jwks=cache)


@pytest.fixture
def jwks_only(cache: JwksCache) -> TokenVerifier:
    return TokenVerifier(hs256_secret=None, jwks=cache)


@pytest.fixture
def hs256_only() -> TokenVerifier:
    return TokenVerifier(hs256_secret=SECRET, jwks=None)


# --- accepted tokens ----------------------------------------------------------------------


async def test_minted_hs256_token_is_accepted(hs256_only: TokenVerifier) -> None:
    token = mint_hs256_token(SECRET, user_id=USER_ID, email="ada@example.com")

    principal = await hs256_only.verify(token)

    assert principal == Principal(user_id=USER_ID, email="ada@example.com", is_admin=False)


async def test_minted_token_has_supabase_shape() -> None:
    token = mint_hs256_token(SECRET, user_id=USER_ID, admin=True, ttl=60, now=1_700_000_000)

    payload = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="authenticated", options={"verify_exp": False}
    )

    assert payload == {
        "sub": str(USER_ID),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": 1_700_000_000,
        "exp": 1_700_000_060,
        "app_metadata": {"provider": "email", "role": "admin"},
    }


async def test_es256_token_is_verified_with_the_jwks_key_fetched_once(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint
) -> None:
    token = es256_token(claims())

    first = await jwks_only.verify(token)
    second = await jwks_only.verify(token)

    assert first == second == Principal(USER_ID, "ada@example.com", is_admin=False)
    assert endpoint.fetches == 1


@pytest.mark.parametrize(
    ("private_key", "jwk_of", "algorithm"),
    [
        (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk, "ES256"),
        (rsa.generate_private_key(65537, 2048), RSAAlgorithm.to_jwk, "RS256"),
        (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm.to_jwk, "EdDSA"),
    ],
    ids=["ec-p256", "rsa", "ed25519"],
)
async def test_algorithm_is_derived_from_a_jwk_without_alg(
    private_key: Any,
    jwk_of: Any,
    algorithm: str,
    jwks_only: TokenVerifier,
    endpoint: FakeJwksEndpoint,
) -> None:
    jwk = jwk_of(private_key.public_key(), as_dict=True)
    assert "alg" not in jwk
    endpoint.keys = [{**jwk, "kid": "k"}]
    token = jwt.encode(claims(), private_key, algorithm=algorithm, headers={"kid": "k"})

    assert (await jwks_only.verify(token)).user_id == USER_ID


async def test_alg_on_the_jwk_is_honoured(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint
) -> None:
    endpoint.keys = [ec_jwk(EC_KEY, KID, alg="ES256")]

    assert (await jwks_only.verify(es256_token(claims()))).user_id == USER_ID


async def test_kid_unknown_to_the_jwks_falls_back_to_the_hs256_secret(
    verifier: TokenVerifier,
) -> None:
    # Supabase stamps a kid on legacy-secret tokens too, but never publishes symmetric keys.
    token = hs256_token(claims(), kid="legacy-hs256")

    assert (await verifier.verify(token)).user_id == USER_ID


async def test_admin_comes_from_app_metadata_only(hs256_only: TokenVerifier) -> None:
    admin = hs256_token(claims(app_metadata={"provider": "email", "role": "admin"}))
    # user_metadata is writable by the user, so it must not grant anything.
    self_promoted = hs256_token(claims(user_metadata={"role": "admin"}))
    odd_metadata = hs256_token(claims(app_metadata="admin"))

    assert (await hs256_only.verify(admin)).is_admin is True
    assert (await hs256_only.verify(self_promoted)).is_admin is False
    assert (await hs256_only.verify(odd_metadata)).is_admin is False


async def test_empty_or_absent_email_is_none(hs256_only: TokenVerifier) -> None:
    assert (await hs256_only.verify(hs256_token(claims(email="")))).email is None
    assert (await hs256_only.verify(hs256_token(claims(drop=["email"])))).email is None


async def test_leeway_accepts_a_token_expired_within_it() -> None:
    lenient = TokenVerifier(hs256_secret=SECRET, jwks=None, leeway=30)
    token = hs256_token(claims(exp=int(time.time()) - 5))

    assert (await lenient.verify(token)).user_id == USER_ID


# --- rejected tokens ----------------------------------------------------------------------


async def test_expired_token(verifier: TokenVerifier) -> None:
    assert await reason_of(verifier, hs256_token(claims(exp=int(time.time()) - 5))) == "expired"
    expired_es256 = es256_token(claims(exp=int(time.time()) - 5))
    assert await reason_of(verifier, expired_es256) == "expired"


async def test_not_yet_valid_token(verifier: TokenVerifier) -> None:
    token = hs256_token(claims(nbf=int(time.time()) + 300))

    assert await reason_of(verifier, token) == "not_yet_valid"


@pytest.mark.parametrize("claim", ["exp", "sub", "aud"])
async def test_missing_required_claim(verifier: TokenVerifier, claim: str) -> None:
    assert await reason_of(verifier, hs256_token(claims(drop=[claim]))) == "missing_claim"
    assert await reason_of(verifier, es256_token(claims(drop=[claim]))) == "missing_claim"


@pytest.mark.parametrize("kid", [None, KID], ids=["no-kid", "real-kid"])
async def test_alg_none_is_rejected(verifier: TokenVerifier, kid: str | None) -> None:
    header = {"alg": "none", "typ": "JWT"} | ({"kid": kid} if kid else {})
    token = f"{segment(header)}.{segment(claims())}."

    assert await reason_of(verifier, token) == "bad_algorithm"


@pytest.mark.parametrize(
    "encoding",
    [serialization.Encoding.PEM, serialization.Encoding.DER],
)
async def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: TokenVerifier,
    jwks_only: TokenVerifier,
    endpoint: FakeJwksEndpoint,
    encoding: serialization.Encoding,
) -> None:
    public_key = EC_KEY.public_key().public_bytes(
        encoding, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with_kid = hand_signed_hs256({"alg": "HS256", "kid": KID}, claims(), public_key)
    without_kid = hand_signed_hs256({"alg": "HS256"}, claims(), public_key)

    # The kid selects the EC key, and the EC key allows ES256 only.
    assert await reason_of(verifier, with_kid) == "bad_algorithm"
    assert await reason_of(jwks_only, with_kid) == "bad_algorithm"
    # Without a kid the only HS256 key is the project secret, which does not match.
    assert await reason_of(verifier, without_kid) == "bad_signature"
    assert await reason_of(jwks_only, without_kid) == "unknown_key"
    assert endpoint.fetches == 1


async def test_es256_token_claiming_another_algorithm_is_rejected(verifier: TokenVerifier) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(claims(), p384, algorithm="ES384", headers={"kid": KID})

    assert await reason_of(verifier, token) == "bad_algorithm"


async def test_es256_token_signed_by_another_key_with_the_real_kid(verifier: TokenVerifier) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())

    assert await reason_of(verifier, es256_token(claims(), key=impostor)) == "bad_signature"


async def test_anon_audience_is_rejected(verifier: TokenVerifier) -> None:
    assert await reason_of(verifier, hs256_token(claims(aud="anon"))) == "bad_audience"
    assert await reason_of(verifier, es256_token(claims(aud="anon"))) == "bad_audience"


@pytest.mark.parametrize("role", ["service_role", "anon", None])
async def test_non_user_roles_are_rejected(verifier: TokenVerifier, role: str | None) -> None:
    payload = claims(role=role) if role else claims(drop=["role"])

    assert await reason_of(verifier, hs256_token(payload)) == "bad_role"
    assert await reason_of(verifier, es256_token(payload)) == "bad_role"


async def test_wrong_secret_is_rejected(verifier: TokenVerifier) -> None:
    token = hs256_token(claims(), secret="another-secret-that-is-also-32-bytes-long")

    assert await reason_of(verifier, token) == "bad_signature"


async def test_tampered_payload_is_rejected(verifier: TokenVerifier) -> None:
    promoted = claims(app_metadata={"provider": "email", "role": "admin"})
    for token in (hs256_token(claims()), es256_token(claims())):
        header, _, signature = token.split(".")
        tampered = f"{header}.{segment(promoted)}.{signature}"

        assert await reason_of(verifier, tampered) == "bad_signature"


@pytest.mark.parametrize("sub", ["not-a-uuid", "", "12345"])
async def test_sub_must_be_a_uuid(verifier: TokenVerifier, sub: str) -> None:
    assert await reason_of(verifier, hs256_token(claims(sub=sub))) == "bad_subject"


async def test_sub_must_be_a_string(verifier: TokenVerifier) -> None:
    assert await reason_of(verifier, hs256_token(claims(sub=12345))) == "bad_subject"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "...",
        "ü.ü.ü",
        "Bearer x.y.z",
        f"{segment([1, 2])}.{segment(claims())}.",
        f"{segment({'alg': 'HS256', 'kid': 7})}.{segment(claims())}.",
        "x" * (8 * 1024 + 1),
    ],
    ids=[
        "empty",
        "one-segment",
        "two-segments",
        "bad-base64",
        "empty-segments",
        "non-ascii",
        "bearer-prefix",
        "header-not-object",
        "kid-not-string",
        "too-long",
    ],
)
async def test_garbage_is_malformed(verifier: TokenVerifier, token: str) -> None:
    assert await reason_of(verifier, token) == "malformed"


async def test_signed_payload_that_is_not_json_is_malformed(verifier: TokenVerifier) -> None:
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(b'not json')}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()

    assert await reason_of(verifier, f"{signing_input}.{b64url(signature)}") == "malformed"


async def test_oversized_valid_token_is_malformed(verifier: TokenVerifier) -> None:
    token = hs256_token(claims(padding="x" * 9000))

    assert await reason_of(verifier, token) == "malformed"


async def test_symmetric_key_in_the_jwks_is_never_used(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint
) -> None:
    published_secret = b"a-secret-that-was-published-by-mistake!!"
    endpoint.keys.append({"kty": "oct", "kid": "sym", "k": b64url(published_secret)})
    token = hand_signed_hs256({"alg": "HS256", "kid": "sym"}, claims(), published_secret)

    assert await reason_of(jwks_only, token) == "unknown_key"


def test_verifier_needs_a_key_source_and_a_strong_secret() -> None:
    with pytest.raises(ValueError):
        TokenVerifier(hs256_secret=None, jwks=None)
    with pytest.raises(ValueError):
        TokenVerifier(hs256_secret="short", jwks=None)


# --- JWKS refetching ----------------------------------------------------------------------


async def test_unknown_kid_refetches_once_per_interval(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint, clock: FakeClock
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    await jwks_only.verify(es256_token(claims()))
    assert endpoint.fetches == 1
    clock.advance(MIN_INTERVAL)  # the warm-up fetch counts against the rate limit too

    assert await reason_of(jwks_only, es256_token(claims(), kid="k2", key=stranger)) == (
        "unknown_key"
    )
    assert endpoint.fetches == 2

    clock.advance(MIN_INTERVAL - 1)
    assert await reason_of(jwks_only, es256_token(claims(), kid="k3", key=stranger)) == (
        "unknown_key"
    )
    assert endpoint.fetches == 2

    clock.advance(1)
    assert await reason_of(jwks_only, es256_token(claims(), kid="k4", key=stranger)) == (
        "unknown_key"
    )
    assert endpoint.fetches == 3


async def test_rotated_key_is_picked_up_on_unknown_kid(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint, clock: FakeClock
) -> None:
    await jwks_only.verify(es256_token(claims()))
    clock.advance(MIN_INTERVAL)
    rotated = ec.generate_private_key(ec.SECP256R1())
    endpoint.keys.append(ec_jwk(rotated, "ec-key-2"))

    principal = await jwks_only.verify(es256_token(claims(), kid="ec-key-2", key=rotated))

    assert principal.user_id == USER_ID
    assert endpoint.fetches == 2


async def test_ttl_expiry_refetches(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint, clock: FakeClock
) -> None:
    token = es256_token(claims())
    await jwks_only.verify(token)

    clock.advance(TTL - 1)
    await jwks_only.verify(token)
    assert endpoint.fetches == 1

    clock.advance(1)
    await jwks_only.verify(token)
    assert endpoint.fetches == 2


async def test_key_dropped_from_the_jwks_is_forgotten_after_refetch(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint, clock: FakeClock
) -> None:
    token = es256_token(claims())
    await jwks_only.verify(token)
    endpoint.keys = [ec_jwk(ec.generate_private_key(ec.SECP256R1()), "ec-key-2")]

    clock.advance(TTL)

    assert await reason_of(jwks_only, token) == "unknown_key"
    assert endpoint.fetches == 2


@pytest.mark.parametrize(
    "outage",
    [
        {"status": 500},
        {"status": 200, "body": b"<html>not json</html>"},
        {"status": 200, "body": b'{"keys": "nope"}'},
        {"error": httpx.ConnectError("connection refused")},
        {"error": httpx.ReadTimeout("timed out")},
    ],
    ids=["http-500", "not-json", "not-a-jwks", "connect-error", "timeout"],
)
async def test_failed_refetch_keeps_the_previous_keys(
    jwks_only: TokenVerifier,
    endpoint: FakeJwksEndpoint,
    clock: FakeClock,
    outage: dict[str, Any],
) -> None:
    token = es256_token(claims())
    await jwks_only.verify(token)
    for name, value in outage.items():
        setattr(endpoint, name, value)

    clock.advance(TTL)

    assert (await jwks_only.verify(token)).user_id == USER_ID
    assert endpoint.fetches == 2
    # The outage is rate limited too: it is not retried on every request.
    await jwks_only.verify(token)
    assert endpoint.fetches == 2


async def test_failed_first_fetch_is_unknown_key_and_retried_after_the_interval(
    jwks_only: TokenVerifier, endpoint: FakeJwksEndpoint, clock: FakeClock
) -> None:
    token = es256_token(claims())
    endpoint.status = 500

    assert await reason_of(jwks_only, token) == "unknown_key"
    assert await reason_of(jwks_only, token) == "unknown_key"
    assert endpoint.fetches == 1

    endpoint.status = 200
    clock.advance(MIN_INTERVAL)

    assert (await jwks_only.verify(token)).user_id == USER_ID
    assert endpoint.fetches == 2


async def test_concurrent_lookups_share_one_fetch(
    cache: JwksCache, endpoint: FakeJwksEndpoint
) -> None:
    gate = endpoint.gate = asyncio.Event()

    async def open_gate_once_fetching() -> None:
        while endpoint.fetches == 0:
            await asyncio.sleep(0)
        gate.set()

    known, again, unknown, _ = await asyncio.gather(
        cache.get_key(KID), cache.get_key(KID), cache.get_key("nope"), open_gate_once_fetching()
    )

    assert known is not None and again is known
    assert unknown is None
    assert endpoint.fetches == 1


# --- pure pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "last_success", "last_attempt", "kid_known", "expected"),
    [
        (0, None, None, False, True),  # never fetched
        (10, None, 0, False, False),  # first fetch failed, still inside the interval
        (30, None, 0, False, True),  # first fetch failed, interval over
        (100, 0, 0, True, False),  # fresh, kid known
        (100, 0, 0, False, True),  # fresh, kid unknown, interval over
        (100, 90, 90, False, False),  # fresh, kid unknown, inside the interval
        (600, 0, 0, True, True),  # TTL expired
        (610, 0, 600, True, False),  # TTL expired but the last attempt just failed
    ],
)
def test_refetch_due(
    now: float,
    last_success: float | None,
    last_attempt: float | None,
    kid_known: bool,
    expected: bool,
) -> None:
    due = refetch_due(
        now=now,
        last_success=last_success,
        last_attempt=last_attempt,
        ttl=600,
        min_interval=30,
        kid_known=kid_known,
    )

    assert due is expected


def test_parse_jwks_keeps_only_usable_signing_keys() -> None:
    good = ec_jwk(EC_KEY, "good")
    document = {
        "keys": [
            good,
            {**good, "kid": "encryption", "use": "enc"},
            {**good, "kid": None},
            {**good, "kid": "hmac-alg", "alg": "HS256"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
            "not a jwk",
        ]
    }

    keys = parse_jwks(document)

    assert list(keys) == ["good"]
    assert keys["good"].algorithm_name == "ES256"


async def test_a_verified_token_is_cached_but_never_past_its_expiry() -> None:
    now = time.time()
    verifier = TokenVerifier(hs256_secret=SECRET, jwks=None, clock=lambda: now)
    short = mint_hs256_token(SECRET, user_id=uuid.uuid4(), ttl=30, now=now)
    long = mint_hs256_token(SECRET, user_id=uuid.uuid4(), ttl=3600, now=now)
    first = await verifier.verify(short)
    assert await verifier.verify(short) is first  # served from the cache
    await verifier.verify(long)
    expiry = {token: entry[0] for token, entry in verifier._verified.items()}
    assert expiry[short] == pytest.approx(int(now) + 30, abs=1)  # the token's own exp
    assert expiry[long] == pytest.approx(now + 60)  # at most a minute


async def test_a_tampered_token_is_not_served_from_the_cache() -> None:
    verifier = TokenVerifier(hs256_secret=SECRET, jwks=None)
    token = mint_hs256_token(SECRET, user_id=uuid.uuid4())
    await verifier.verify(token)
    header, payload, signature = token.split(".")
    with pytest.raises(AuthError):
        await verifier.verify(f"{header}.{payload}.{signature[:-2]}AA")
