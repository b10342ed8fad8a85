"""Cache of the Supabase project's signing keys, fetched from its JWKS endpoint.

Concurrency: one ``asyncio.Lock`` serialises fetches. A coroutine that finds a refetch due
takes the lock and decides again under it, so callers that queued behind an in-flight fetch
reuse its result instead of fetching again. A caller whose kid is unknown while a fetch is in
flight waits for that fetch too: the rate limit would otherwise answer "unknown" before the
first fetch (or the one bringing a rotated key) has landed. Callers whose kid is already
cached never wait on a fetch they did not need.

Refetch policy (``refetch_due``): a fetch happens when nothing has been fetched yet, when the
keys are older than ``ttl``, or when a kid is unknown (Supabase rotated its keys). Every
attempt, successful or not, is rate limited to one per ``min_refetch_interval``: the kid comes
from unauthenticated input, so a flood of made-up kids must not turn into a flood of requests
to Supabase, and neither must an outage.

A failed fetch keeps the previous keys: a JWKS outage should not log every user out, and keys
Supabase revokes disappear at the next successful fetch. One key that cannot be used (a type,
curve or algorithm we do not take, malformed members) is skipped and logged once per cache,
never the set: the other keys keep verifying.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from jwt import PyJWK

logger = logging.getLogger(__name__)

# Only public-key families. A symmetric ("oct") key in a published JWKS would be a secret
# anyone can read; accepting it would let anyone mint tokens.
_ASYMMETRIC_KEY_TYPES = frozenset({"EC", "RSA", "OKP"})


class JwksFetchError(Exception):
    """The JWKS could not be fetched or parsed. Internal: ``get_key`` never raises it."""


def refetch_due(
    *,
    now: float,
    last_success: float | None,
    last_attempt: float | None,
    ttl: float,
    min_interval: float,
    kid_known: bool,
) -> bool:
    """Whether to fetch the JWKS now; pure so the policy can be tested with a table."""
    if last_attempt is not None and now - last_attempt < min_interval:
        return False
    if last_success is None or now - last_success >= ttl:
        return True
    return not kid_known


def parse_jwks(document: Any, on_skip: Callable[[str], None] | None = None) -> dict[str, PyJWK]:
    """Map kid to key, skipping keys we cannot or must not use instead of failing the set;
    `on_skip` hears why each one was skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFetchError("JWKS document has no 'keys' list")
    keys: dict[str, PyJWK] = {}
    for jwk in document["keys"]:
        key_or_reason = _signing_key(jwk)
        if isinstance(key_or_reason, str):
            if on_skip is not None:
                kid = jwk.get("kid") if isinstance(jwk, dict) else None
                on_skip(f"kid {str(kid)[:64]!r}: {key_or_reason}")
            continue
        keys[jwk["kid"]] = key_or_reason
    return keys


def _signing_key(jwk: Any) -> PyJWK | str:
    """The JWK as a verification key, or why it is not one."""
    if not isinstance(jwk, dict):
        return "not a JSON object"
    if not isinstance(jwk.get("kid"), str):
        return "no string kid"
    if jwk.get("kty") not in _ASYMMETRIC_KEY_TYPES:
        return "not a public-key type (EC, RSA, OKP)"
    if jwk.get("use", "sig") != "sig":
        return "not a signing key"
    try:
        # PyJWK binds the algorithm here, from the JWK's "alg" or derived from kty/crv
        # (EC P-256 -> ES256, RSA -> RS256, OKP Ed25519 -> EdDSA); the token never chooses.
        # Any error, not only PyJWT's: a malformed member (an "alg" that is a list) raises
        # TypeError, and one bad key must not fail the set.
        key = PyJWK(jwk)
    except Exception as exc:
        return f"unusable ({type(exc).__name__})"
    if key.algorithm_name.startswith("HS"):
        return "a symmetric algorithm"
    return key


class JwksCache:
    """Signing keys by kid from ``url`` (the full JWKS URL), refreshed as described above.

    The HTTP client is owned by the caller (opened and closed in the app's lifespan); its
    timeout bounds how long verifications wait behind a fetch.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        ttl: float = 600,
        min_refetch_interval: float = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._client = client
        self._ttl = ttl
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._last_success: float | None = None
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()
        # Skipped keys already logged: the JWKS is refetched every `ttl`, and a bad key in it
        # would otherwise repeat its line each time.
        self._reported: set[str] = set()

    async def get_key(self, kid: str) -> PyJWK | None:
        """The key for ``kid``, or None if the JWKS (refetched if due) does not have it."""
        key = self._keys.get(kid)
        if self._refetch_due(kid) or (key is None and self._lock.locked()):
            async with self._lock:
                if self._refetch_due(kid):
                    await self._refresh()
            key = self._keys.get(kid)
        return key

    def _refetch_due(self, kid: str) -> bool:
        return refetch_due(
            now=self._clock(),
            last_success=self._last_success,
            last_attempt=self._last_attempt,
            ttl=self._ttl,
            min_interval=self._min_refetch_interval,
            kid_known=kid in self._keys,
        )

    async def _refresh(self) -> None:
        self._last_attempt = self._clock()
        try:
            keys = await self._fetch()
        except JwksFetchError as exc:
            logger.warning("JWKS fetch failed, keeping %d cached keys: %s", len(self._keys), exc)
            return
        self._keys = keys
        self._last_success = self._clock()

    async def _fetch(self) -> dict[str, PyJWK]:
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JwksFetchError(f"{type(exc).__name__}: {exc}") from exc
        return parse_jwks(document, on_skip=self._report_skipped)

    def _report_skipped(self, why: str) -> None:
        if why not in self._reported:
            self._reported.add(why)
            logger.warning("JWKS: skipping a key we cannot use, %s", why)
