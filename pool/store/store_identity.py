"""Noticing that Redis lost its data.

A Redis restarted without persistence, or a failover to an empty replica, answers as if nothing
happened: every key is simply gone. The pool keeps one small key whose only purpose is to be
there; the worker checks it every reap tick (seconds), and when it is missing, the store was
reset (or this is its first start) and the worker reconciles at once, rebuilding the records
of leased machines from the provider and the ledger, instead of waiting for reconcile's next
scheduled run while previews cannot be routed.
"""

from __future__ import annotations

import contextlib
import secrets

from redis.asyncio import Redis

from pool.core.errors import PoolUnavailable
from pool.store.keys import DEFAULT_PREFIX, Keys
from pool.store.redis_errors import resolved, translated_redis_errors


def identity_key(prefix: str = DEFAULT_PREFIX) -> str:
    return Keys(prefix).store_identity


async def store_was_reset(redis: Redis, prefix: str = DEFAULT_PREFIX) -> bool:
    """True exactly once per reset, for exactly one caller (SET NX): the store held no
    identity, and now holds a new one."""
    async with translated_redis_errors():
        created = await resolved(redis.set(identity_key(prefix), secrets.token_hex(8), nx=True))
    return bool(created)


async def forget_store_identity(redis: Redis, prefix: str = DEFAULT_PREFIX) -> None:
    """Undo `store_was_reset` when handling the reset failed, so that the next check (and
    reconcile) happens again soon. Best effort: Redis may be what failed."""
    with contextlib.suppress(PoolUnavailable):
        async with translated_redis_errors():
            await resolved(redis.delete(identity_key(prefix)))
