"""Translation of redis-py errors into the pool's own, at the one boundary that talks to Redis."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import redis.exceptions

from pool.core.errors import PoolUnavailable

T = TypeVar("T")


@asynccontextmanager
async def translated_redis_errors() -> AsyncIterator[None]:
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise PoolUnavailable(f"Redis: {exc}") from exc


async def resolved(value: Awaitable[T] | T) -> T:
    """redis-py types its async commands as `Awaitable[X] | X` (one signature shared with the
    sync client); this narrows them for the type checker at no cost."""
    if inspect.isawaitable(value):
        return await value
    return value
