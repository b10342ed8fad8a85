"""Fly's API rate limits as one budget for every process of the deployment.

Fly counts requests per action and Machine (or per action and app) however many clients send
them (research notes section 4). The in-process limiter (pool/providers/fly_ratelimit.py) keeps
one process inside those limits; with several `worker` processes each would spend the whole
budget. This limiter keeps the buckets in Redis instead, so all of them share one: a GCRA slot
reserved atomically by a Lua script on Redis' clock, then slept for here, as the in-process
limiter does.

The interval is stretched by SLACK so that our clock and Fly's, and the request's trip there,
never make a request at the exact edge of a bucket look early to Fly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from redis.asyncio import Redis

from pool.leasing import DEFAULT_PREFIX
from pool.providers.fly_ratelimit import DEFAULT_RATE, FLY_RATES, Rate
from pool.redis_errors import translated_redis_errors
from pool.scripts import Scripts

SLACK = 1.02


class SharedRateLimiter:
    """Token buckets per (action, scope) in Redis; a drop-in for fly_ratelimit.RateLimiter."""

    def __init__(
        self,
        redis: Redis,
        *,
        rates: Mapping[str, Rate] = FLY_RATES,
        default: Rate = DEFAULT_RATE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._scripts = Scripts(redis)
        self._rates = rates
        self._default = default
        self._sleep = sleep
        self._prefix = prefix

    def rate_for(self, action: str) -> Rate:
        return self._rates.get(action, self._default)

    async def acquire(self, action: str, scope: str) -> None:
        rate = self.rate_for(action)
        interval_us = round(1_000_000 * SLACK / rate.per_second)
        async with translated_redis_errors():
            wait_us = await self._scripts.run(
                "fly_slot", self._prefix, action, scope, interval_us, rate.burst
            )
        if int(wait_us) > 0:
            await self._sleep(int(wait_us) / 1_000_000)
