"""HTTP to the Fly Machines API: auth, rate limits, retries, leases and error mapping.

Every request goes through `FlyClient.send`, which waits for a rate-limit token, sends, and
retries 408, 429 and 5xx answers and transport failures with exponential backoff and jitter,
honouring `Retry-After` when Fly sends it. httpx exceptions and error answers are translated
here, once, into the pool's errors:

    ProviderError                  pool.core.errors
    ├── MachineNotFound            404
    ├── CapacityExhausted          capacity or quota refusals (research notes section 4)
    ├── OutcomeUnknown             a non-idempotent request may or may not have taken effect
    └── FlyAPIError                any other refusal: carries the HTTP status and Fly's message
        └── LeaseConflict          409: another holder has the machine's lease

A non-idempotent request (create) is never retried blindly: a timeout, 408 or 5xx may come
after Fly did the work, so `send` raises OutcomeUnknown and the caller looks before retrying.
Only refusals that surely did nothing (429, a connection never made) are retried for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from pool.core.backoff import backoff_delay
from pool.core.errors import CapacityExhausted, MachineNotFound, ProviderError
from pool.providers.fly_models import ErrorBody, LeaseEnvelope
from pool.providers.fly_ratelimit import Limiter

log = logging.getLogger(__name__)

LEASE_HEADER = "fly-machine-lease-nonce"
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_CAPACITY_STATUSES = frozenset({"insufficient_capacity", "volume_placement_capacity"})
# Capacity refusals seen in production that carry no `status` (notes section 4).
_CAPACITY_PHRASES = (
    "insufficient resources",
    "insufficient memory",
    "no capacity",
    "could not reserve resource",
    "over the allowed quota",
)

Model = TypeVar("Model", bound=pydantic.BaseModel)


class ProviderMeter(Protocol):
    """Hears each failed try of an API call and each wait for Fly's rate limits
    (pool.services.metrics.Metrics is one)."""

    def provider_error(self, provider: str, kind: str) -> None: ...

    def rate_limit_wait(self, provider: str, seconds: float) -> None: ...


def error_kind(status: int, failure: ProviderError | None = None) -> str:
    """A failed try, for preview_provider_errors_total's `kind`: transport (no answer),
    capacity, rate_limited (429), not_found (404), server (5xx, 408), client (other 4xx)."""
    if isinstance(failure, CapacityExhausted):
        return "capacity"
    if status == 429:
        return "rate_limited"
    if status == 404:
        return "not_found"
    if status >= 500 or status == 408:
        return "server"
    return "client" if status else "transport"


class FlyAPIError(ProviderError):
    def __init__(self, message: str, *, status: int, error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class LeaseConflict(FlyAPIError):
    pass


class OutcomeUnknown(ProviderError):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` counts every try, the first included. Delays come from backoff_delay."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0
    jitter: float = 1.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")


def is_capacity_error(status: int, body: ErrorBody) -> bool:
    if body.status in _CAPACITY_STATUSES:
        return True
    message = body.error.lower()
    return status in (400, 403, 409, 412) and any(p in message for p in _CAPACITY_PHRASES)


def is_retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def retry_after(response: httpx.Response, ceiling: float) -> float:
    """Seconds from a delta-seconds Retry-After header; 0 when absent or not a number."""
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return 0.0
    return min(max(value, 0.0), ceiling)


def error_from_response(response: httpx.Response, what: str) -> ProviderError:
    status = response.status_code
    try:
        body = ErrorBody.model_validate_json(response.content)
    except pydantic.ValidationError:
        body = ErrorBody(error=response.text[:200])
    message = f"{what}: HTTP {status}: {body.error or response.reason_phrase}"
    if is_capacity_error(status, body):
        return CapacityExhausted(message)
    if status == 404:
        return MachineNotFound(message)
    if status == 409 and "lease" in body.error.lower():
        return LeaseConflict(message, status=status, error=body.error)
    return FlyAPIError(message, status=status, error=body.error)


def parse(model: type[Model], response: httpx.Response, what: str) -> Model:
    try:
        return model.model_validate_json(response.content)
    except pydantic.ValidationError as exc:
        raise ProviderError(f"{what}: unexpected answer from Fly: {exc}") from exc


class FlyClient:
    """One app's Machines API, over one httpx.AsyncClient."""

    def __init__(
        self,
        *,
        app_name: str,
        token: str,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None,
        limiter: Limiter,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
        timeout: float,
        meter: ProviderMeter | None = None,
    ) -> None:
        self.app_name = app_name
        self._meter = meter
        self._limiter = limiter
        self._retry = retry
        self._sleep = sleep
        self._rand = rand
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=timeout,
        )

    def machines_path(self, machine_id: str | None = None, action: str | None = None) -> str:
        path = f"/apps/{quote(self.app_name, safe='')}/machines"
        if machine_id is not None:
            path += f"/{quote(machine_id, safe='')}"
        if action is not None:
            path += f"/{action}"
        return path

    def backoff(self, attempt: int) -> float:
        policy = self._retry
        return backoff_delay(
            attempt, base=policy.base, cap=policy.cap, jitter=policy.jitter, rand=self._rand
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        scope: str,
        params: Mapping[str, str | Sequence[str]] | None = None,
        json: dict[str, Any] | None = None,
        nonce: str | None = None,
        idempotent: bool = True,
        expect: Collection[int] = (200,),
    ) -> httpx.Response:
        """Send one API call, retrying what may be retried; return an answer in `expect`."""
        what = f"{action} {path}"
        headers = {LEASE_HEADER: nonce} if nonce is not None else None
        attempt = 0
        while True:
            await self._acquire(action, scope)
            try:
                response = await self._http.request(
                    method, path, params=params, json=json, headers=headers
                )
            except httpx.RequestError as exc:
                self._count_error(0)
                if not (idempotent or isinstance(exc, _NEVER_SENT)):
                    raise OutcomeUnknown(f"{what}: {exc!r}") from exc
                if attempt + 1 >= self._retry.attempts:
                    raise ProviderError(f"{what}: {exc!r}") from exc
                delay = self.backoff(attempt)
            else:
                if response.status_code in expect:
                    return response
                self._raise_unless_retryable(response, what, idempotent, attempt)
                delay = max(
                    self.backoff(attempt), retry_after(response, self._retry.max_retry_after)
                )
                if response.status_code == 429 and self._meter is not None:
                    self._meter.rate_limit_wait("fly", delay)
            await self._sleep(delay)
            attempt += 1

    async def _acquire(self, action: str, scope: str) -> None:
        """Wait for a rate-limit token (the wait is what the limiter slept)."""
        waited = await self._limiter.acquire(action, scope)
        if waited > 0 and self._meter is not None:
            self._meter.rate_limit_wait("fly", waited)

    def _count_error(self, status: int, failure: ProviderError | None = None) -> None:
        if self._meter is not None:
            self._meter.provider_error("fly", error_kind(status, failure))

    def _raise_unless_retryable(
        self, response: httpx.Response, what: str, idempotent: bool, attempt: int
    ) -> None:
        failure = error_from_response(response, what)
        status = response.status_code
        self._count_error(status, failure)
        if isinstance(failure, CapacityExhausted) or not is_retryable(status):
            raise failure
        if not idempotent and status != 429:
            raise OutcomeUnknown(str(failure)) from failure
        if attempt + 1 >= self._retry.attempts:
            raise failure

    @contextlib.asynccontextmanager
    async def lease(self, machine_id: str, purpose: str, ttl: int) -> AsyncIterator[str]:
        """Hold the machine's lease for the block; yields the nonce to send on mutations."""
        nonce = await self._acquire_lease(machine_id, purpose, ttl)
        try:
            yield nonce
        finally:
            await self._release_lease(machine_id, nonce)

    async def _acquire_lease(self, machine_id: str, purpose: str, ttl: int) -> str:
        path = self.machines_path(machine_id, "lease")
        body = {"ttl": ttl, "description": f"preview-orchestrator {purpose}"}
        attempt = 0
        while True:
            try:
                response = await self.send(
                    "POST",
                    path,
                    action="Machines_create_lease",
                    scope=machine_id,
                    json=body,
                    expect=(200, 201),
                )
            except LeaseConflict:
                # Another holder's lease ends with its operation or its TTL: worth a wait.
                if attempt + 1 >= self._retry.attempts:
                    raise
                await self._sleep(self.backoff(attempt))
                attempt += 1
                continue
            return parse(LeaseEnvelope, response, f"lease {machine_id}").lease().nonce

    async def _release_lease(self, machine_id: str, nonce: str) -> None:
        try:
            await self.send(
                "DELETE",
                self.machines_path(machine_id, "lease"),
                action="Machines_release_lease",
                scope=machine_id,
                nonce=nonce,
            )
        except MachineNotFound:
            pass  # destroyed under the lease: nothing left to release
        except ProviderError as exc:
            # The lease expires with its TTL; failing the operation for it would be worse.
            log.warning("could not release the lease on %s: %s", machine_id, exc)

    async def aclose(self) -> None:
        await self._http.aclose()
