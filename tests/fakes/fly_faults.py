"""What the Fly fake can do wrong on purpose, and how it enforces Fly's rate limits.

- `RateLimits`: Fly's published limits (notes section 4), one token bucket per (operation,
  machine or app). Written independently of the client's limiter so that one checks the other.
- `Faults`: the next N calls of an operation answer an error, either instead of doing the work
  or after doing it (the ambiguous case: a create that made the machine, then answered 408).
- `FlyNetwork`: an httpx transport in front of the fake that can lose answers (the request
  reached the fake, the client sees a read timeout) or refuse connections.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp

# (requests per second, burst) per spec operationId; the rest get DEFAULT.
DEFAULT_LIMIT = (1.0, 3)
LIMITS = {"Machines_show": (5.0, 10)}
_SLACK = 1e-9  # float noise, not leniency


class RateLimits:
    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, operation: str, scope: str, now: float) -> float:
        """0 if the request is within the limit (and counts it), else seconds until it would
        be."""
        rate, burst = LIMITS.get(operation, DEFAULT_LIMIT)
        tokens, stamp = self._buckets.get((operation, scope), (float(burst), now))
        tokens = min(float(burst), tokens + max(now - stamp, 0.0) * rate)
        if tokens + _SLACK < 1.0:
            self._buckets[(operation, scope)] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[(operation, scope)] = (tokens - 1.0, now)
        return 0.0


@dataclass
class Fault:
    status: int
    error: str
    after: bool  # do the work, then answer the error
    fly_status: str | None = None
    retry_after: float | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.fly_status is not None:
            body["status"] = self.fly_status
        return body

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(math.ceil(self.retry_after))}


class Faults:
    def __init__(self) -> None:
        self._queued: dict[str, deque[Fault]] = {}

    def add(self, operation: str, fault: Fault, times: int) -> None:
        self._queued.setdefault(operation, deque()).extend([fault] * times)

    def take(self, operation: str) -> Fault | None:
        queue = self._queued.get(operation)
        return queue.popleft() if queue else None


class FlyNetwork(httpx.AsyncBaseTransport):
    """httpx.ASGITransport to the fake, with answers that can be lost on the way back."""

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._lost: deque[tuple[str, str]] = deque()
        self._refused = 0

    def lose_answer(self, method: str, path_suffix: str, times: int = 1) -> None:
        """The next `times` matching requests reach the fake, which acts on them; the client
        then sees a read timeout instead of the answer."""
        self._lost.extend([(method, path_suffix)] * times)

    def refuse_connections(self, times: int = 1) -> None:
        self._refused += times

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._refused:
            self._refused -= 1
            raise httpx.ConnectError("connection refused (injected)", request=request)
        response = await self._inner.handle_async_request(request)
        if self._lost and _matches(self._lost[0], request):
            self._lost.popleft()
            await response.aread()
            raise httpx.ReadTimeout("answer lost (injected)", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _matches(rule: tuple[str, str], request: httpx.Request) -> bool:
    method, suffix = rule
    return request.method == method and request.url.path.endswith(suffix)
