"""Fly's API rate limits as one budget for every process of the deployment.

Fly counts requests per action and Machine (or per action and app) however many clients send
them (research notes section 4). The in-process limiter (pool/providers/fly_ratelimit.py) keeps
one process inside those limits; with several `worker` processes each would spend the whole
budget. This limiter keeps the buckets in Redis instead, so all of them share one: a GCRA slot
reserved atomically by a Lua script on Redis' clock, then slept for here, as the in-process
limiter does.

The interval is stretched by SLACK so that our clock and Fly's, and the request's trip there,
never make a request at the exact edge of a bucket look early to Fly.

When Redis cannot be reached, the process falls back to its own buckets (with a warning)
rather than failing the Fly call: pacing alone is worth less than the mutation, and a
mutation that failed here would leave a machine half-way (a reset stopped, not started).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from redis.asyncio import Redis

from pool.core.errors import PoolUnavailable
from pool.providers.fly_ratelimit import DEFAULT_RATE, FLY_RATES, Rate, RateLimiter
from pool.store.keys import DEFAULT_PREFIX, Keys
from pool.store.redis_errors import translated_redis_errors
from pool.store.scripts import Scripts

log = logging.getLogger(__name__)

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
        self._sleep = sleep
        self.keys = Keys(prefix)
        # The same rates; used alone when Redis cannot be reached.
        self._local = RateLimiter(time.monotonic, sleep, rates, default)

    async def acquire(self, action: str, scope: str) -> float:
        rate = self._local.rate_for(action)
        interval_us = round(1_000_000 * SLACK / rate.per_second)
        try:
            async with translated_redis_errors():
                wait_us = await self._scripts.run(
                    "fly_slot", [self.keys.fly_rate(action, scope)], interval_us, rate.burst
                )
        except PoolUnavailable as exc:
            log.warning("Fly rate budget unreachable, pacing this process alone: %s", exc)
            return await self._local.acquire(action, scope)
        if int(wait_us) > 0:
            await self._sleep(int(wait_us) / 1_000_000)
            return int(wait_us) / 1_000_000
        return 0.0
