"""Verification of Supabase access tokens.

The key decides the algorithm, never the token: a token's header is read unverified only for
its ``kid``. A kid the project's JWKS knows is verified with that key and the one algorithm the
JWK implies; anything else is verified with the legacy HS256 project secret, if configured.
That closes the classic confusions (``alg: none``, an HS256 token "signed" with the public key
as HMAC secret) by construction rather than by blocklist.

PyJWT's exceptions stop here: callers see only ``AuthError`` with a machine-readable reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt
from jwt import PyJWK
from jwt import exceptions as jwt_errors

from app.jwks import JwksCache

__all__ = [
    "AuthError",
    "AuthErrorReason",
    "JwksCache",
    "Principal",
    "TokenVerifier",
    "mint_hs256_token",
]

AUDIENCE: Final = "authenticated"
ROLE: Final = "authenticated"
# Supabase tokens are ~1 KiB; the cap bounds the work an unauthenticated caller can cause.
MAX_TOKEN_LENGTH: Final = 8 * 1024
VERIFIED_CACHE_SECONDS: Final = 60.0
VERIFIED_CACHE_SIZE: Final = 10_000
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output. Supabase enforces it too.
MIN_HS256_SECRET_BYTES: Final = 32

AuthErrorReason = Literal[
    "malformed",
    "unknown_key",
    "bad_algorithm",
    "bad_signature",
    "bad_key",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "bad_audience",
    "bad_role",
    "bad_subject",
]


class AuthError(Exception):
    """The token is not acceptable; ``reason`` is safe to log and to map to a 401."""

    def __init__(self, reason: AuthErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: AuthErrorReason = reason


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    email: str | None
    is_admin: bool


# Most specific first: InvalidSignatureError is a DecodeError, and nearly everything is an
# InvalidTokenError.
_REASONS: Final[tuple[tuple[type[jwt_errors.PyJWTError], AuthErrorReason], ...]] = (
    (jwt_errors.ExpiredSignatureError, "expired"),
    (jwt_errors.ImmatureSignatureError, "not_yet_valid"),
    (jwt_errors.InvalidAudienceError, "bad_audience"),
    (jwt_errors.MissingRequiredClaimError, "missing_claim"),
    (jwt_errors.InvalidAlgorithmError, "bad_algorithm"),
    (jwt_errors.InvalidSignatureError, "bad_signature"),
    (jwt_errors.InvalidSubjectError, "bad_subject"),
    (jwt_errors.InvalidKeyError, "bad_key"),
)


def _reason_for(exc: jwt_errors.PyJWTError) -> AuthErrorReason:
    for exc_type, reason in _REASONS:
        if isinstance(exc, exc_type):
            return reason
    return "malformed"


class TokenVerifier:
    """Turns a Supabase access token into a ``Principal`` or raises ``AuthError``.

    ``leeway`` is seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    """

    def __init__(
        self,
        *,
        hs256_secret: str | None,
        jwks: JwksCache | None,
        leeway: float = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if hs256_secret is None and jwks is None:
            raise ValueError("TokenVerifier needs an HS256 secret, a JWKS, or both")
        if hs256_secret is not None and len(hs256_secret.encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"hs256_secret must be at least {MIN_HS256_SECRET_BYTES} bytes")
        self._hs256_secret = hs256_secret
        self._jwks = jwks
        self._leeway = leeway
        self._clock = clock
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def verify(self, token: str) -> Principal:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("malformed", "empty, not a string, or too long")
        cached = self._verified.get(token)
        now = self._clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError as exc:
            raise AuthError("malformed", str(exc)) from exc
        key, algorithm = await self._select_key(header.get("kid"))
        claims = self._decode(token, key, algorithm)
        principal = _principal_from_claims(claims)
        # An editor sends the same token with every request; checking an HS256 signature
        # once a minute is enough (the project secret does not rotate under a running
        # process). JWKS-verified tokens are checked every time, so a key dropped from the JWKS
        # stops working at once. Never cached past the token's own expiry; bounded in size.
        if algorithm == "HS256":
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            expiry = min(float(claims["exp"]), now + VERIFIED_CACHE_SECONDS)
            self._verified[token] = (expiry, principal)
        return principal

    async def _select_key(self, kid: str | None) -> tuple[PyJWK | str, str]:
        # A kid the JWKS does not know falls through to HS256: Supabase puts a kid on tokens
        # signed with the legacy secret too, and symmetric keys are never published.
        if kid is not None and self._jwks is not None:
            jwk = await self._jwks.get_key(kid)
            if jwk is not None:
                return jwk, jwk.algorithm_name
        if self._hs256_secret is not None:
            return self._hs256_secret, "HS256"
        raise AuthError("unknown_key", f"no key for kid {kid!r}")

    def _decode(self, token: str, key: PyJWK | str, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=AUDIENCE,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub", "aud"],
                    "verify_signature": True,
                    # Fail closed on weak keys instead of PyJWT's default of warning.
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt_errors.PyJWTError as exc:
            raise AuthError(_reason_for(exc), str(exc)) from exc


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    # "anon" and "service_role" tokens are signed by the same key; only end users may pass.
    if claims.get("role") != ROLE:
        raise AuthError("bad_role", f"role {claims.get('role')!r}")
    try:
        # PyJWT has already required sub and checked that it is a string.
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise AuthError("bad_subject", "sub is not a UUID") from exc
    email = claims.get("email")
    # app_metadata, unlike user_metadata, can only be written server-side.
    app_metadata = claims.get("app_metadata")
    is_admin = isinstance(app_metadata, dict) and app_metadata.get("role") == "admin"
    return Principal(
        user_id=user_id,
        # Supabase sends "" for users without an email (phone, anonymous).
        email=email if isinstance(email, str) and email else None,
        is_admin=is_admin,
    )


def mint_hs256_token(
    secret: str,
    *,
    user_id: uuid.UUID,
    email: str | None = None,
    admin: bool = False,
    ttl: int = 3600,
    now: float | None = None,
) -> str:
    """A Supabase-shaped access token signed with ``secret``, for development and tests."""
    issued_at = int(time.time() if now is None else now)
    app_metadata: dict[str, str] = {"provider": "email"}
    if admin:
        app_metadata["role"] = "admin"
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "aud": AUDIENCE,
        "role": ROLE,
        "iat": issued_at,
        "exp": issued_at + ttl,
        "app_metadata": app_metadata,
    }
    if email is not None:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm="HS256")
