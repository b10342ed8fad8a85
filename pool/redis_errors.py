"""Translation of redis-py errors into the pool's own, at the one boundary that talks to Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.exceptions

from pool.errors import PoolUnavailable


@asynccontextmanager
async def translated_redis_errors() -> AsyncIterator[None]:
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise PoolUnavailable(f"Redis: {exc}") from exc
