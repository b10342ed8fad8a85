"""Client-side rate limiting at the Fly Machines API's published limits.

Fly limits each action to 1 request/s with bursts of 3, scoped to the Machine (or, for create
and list, the app); Get Machine allows 5 req/s with bursts of 10 (research notes section 4).
One token bucket per (action, scope) keeps us inside those limits, so a burst of pool work is
spread out here instead of being answered with 429s.

Concurrency: `acquire` reserves a token synchronously (no await between reading and updating a
bucket) and only then sleeps until the reserved moment, so concurrent callers on one event loop
get distinct, ordered slots. A caller cancelled while sleeping forfeits its slot; that only
makes us slower than the limit, never faster. The bucket math is pure and takes the clock as an
argument.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and self.burst >= 1):
            raise ValueError(f"a rate needs per_second > 0 and burst >= 1, got {self!r}")


# Actions are the spec's operationIds. Anything not listed gets DEFAULT_RATE.
DEFAULT_RATE = Rate(per_second=1.0, burst=3)
FLY_RATES: Mapping[str, Rate] = {"Machines_show": Rate(per_second=5.0, burst=10)}

# Buckets that have refilled completely carry no information; past this many we drop them.
_PRUNE_ABOVE = 1024


class Limiter(Protocol):
    """Waits until a call of `action` on `scope` is within Fly's limits. RateLimiter keeps the
    buckets in this process; pool.providers.fly_budget.SharedRateLimiter keeps them in Redis, for
    every process of the deployment. Returns the seconds it waited."""

    async def acquire(self, action: str, scope: str) -> float: ...


class ReservationBucket:
    """Reservation-style bucket: tokens may go negative, and the debt is the wait."""

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._stamp = now

    def reserve(self, now: float) -> float:
        """Take one token and return how many seconds after `now` it may be used."""
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate.per_second

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.rate.burst

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._stamp, 0.0)  # a clock never runs backwards for a bucket
        self._tokens = min(float(self.rate.burst), self._tokens + elapsed * self.rate.per_second)
        self._stamp = max(now, self._stamp)


class RateLimiter:
    """Token buckets per (action, scope), with an injectable clock and sleep."""

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rates: Mapping[str, Rate] = FLY_RATES,
        default: Rate = DEFAULT_RATE,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._rates = rates
        self._default = default
        self._buckets: dict[tuple[str, str], ReservationBucket] = {}

    def rate_for(self, action: str) -> Rate:
        return self._rates.get(action, self._default)

    def reserve(self, action: str, scope: str) -> float:
        now = self._clock()
        key = (action, scope)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[key] = ReservationBucket(self.rate_for(action), now)
        return bucket.reserve(now)

    async def acquire(self, action: str, scope: str) -> float:
        delay = self.reserve(action, scope)
        if delay > 0:
            await self._sleep(delay)
        return max(delay, 0.0)

    def _prune(self, now: float) -> None:
        for key in [key for key, bucket in self._buckets.items() if bucket.is_full(now)]:
            del self._buckets[key]
