"""The pools' sampled history in Redis: one sorted set (`Keys.pool_history`) of every pool's
samples, each scored by its time, holding the last HISTORY_SECONDS.

One set for all pools, not one per pool: the dashboard always reads every pool's last hour at
once (one ZRANGEBYSCORE), and trimming is one command per write. At a sample every 10 s that
is 360 members per pool, a few dozen kilobytes for a handful of pools.
"""

from __future__ import annotations

from redis.asyncio import Redis

from pool.core.pool_history import HISTORY_SECONDS, PoolSample
from pool.store.keys import DEFAULT_PREFIX, Keys
from pool.store.redis_errors import resolved, translated_redis_errors


class PoolHistory:
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._key = Keys(prefix).pool_history

    async def record(self, samples: list[PoolSample], now: float) -> None:
        """Add `samples` and drop every sample older than HISTORY_SECONDS before `now`, in one
        transaction. The key expires an hour after the last write, so a sampler that stopped
        leaves nothing behind."""
        async with translated_redis_errors(), self._redis.pipeline(transaction=True) as pipe:
            if samples:
                pipe.zadd(self._key, {sample.encode(): sample.at for sample in samples})
            pipe.zremrangebyscore(self._key, "-inf", f"({now - HISTORY_SECONDS}")
            pipe.expire(self._key, HISTORY_SECONDS)
            await pipe.execute()

    async def since(self, start: float) -> list[PoolSample]:
        """Every pool's samples taken at or after `start`, oldest first."""
        async with translated_redis_errors():
            members = await resolved(self._redis.zrangebyscore(self._key, start, "+inf"))
        decoded = (PoolSample.decode(member) for member in members)
        return [sample for sample in decoded if sample is not None]
