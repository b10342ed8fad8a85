"""`dev` says how its warm pool fills: each pool's ready machines against its minimum as they
change, when the first machine is ready, and when every pool holds its minimum. Then it falls
silent: from there on the pool is the worker's business (and `pool status`'s).

It only reads the stores, as `pool status` does; a store that does not answer (an outage the
worker reports on its own) is skipped until it does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.settings import Settings
from pool.core.errors import PoolError
from pool.store.inventory import Inventory, PoolKey
from sql.database import open_pool
from sql.errors import DatabaseUnavailable, DataError
from sql.pool_targets import list_targets

log = logging.getLogger("preview.dev")

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Fill:
    pool: PoolKey
    ready: int
    booting: int
    minimum: int

    @property
    def full(self) -> bool:
        return self.ready >= self.minimum

    def line(self) -> str:
        booting = f" ({self.booting} booting)" if self.booting else ""
        return f"pool {self.name}: {self.ready}/{self.minimum} ready{booting}"

    @property
    def name(self) -> str:
        return f"{self.pool.template}/{self.pool.region}"


def progress_lines(
    before: dict[PoolKey, Fill], now: dict[PoolKey, Fill], *, first_seen: bool, elapsed: float
) -> tuple[list[str], bool]:
    """What to say about a change from `before` to `now`, and whether a machine has been seen
    ready by then. Pure: the watcher feeds it what it read."""
    lines = [fill.line() for key, fill in now.items() if before.get(key) != fill]
    if not first_seen and (ready := [f for f in now.values() if f.ready]):
        lines.append(f"the first preview machine is ready ({ready[0].name}) after {elapsed:.1f} s")
        first_seen = True
    if now and all(f.full for f in now.values()) and not all(f.full for f in before.values()):
        lines.append(f"the warm pool is filled after {elapsed:.1f} s")
    return lines, first_seen


async def watch_pool_fill(
    settings: Settings, *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Log the fill of the configured pools until each holds its minimum."""
    assert settings.database_url and settings.redis_url
    started = clock()
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    try:
        inventory = Inventory(redis)
        before: dict[PoolKey, Fill] = {}
        first_seen = False
        while True:
            try:
                now = await _read(settings, inventory, db)
            except (PoolError, RedisError, DatabaseUnavailable, DataError):
                await asyncio.sleep(POLL_SECONDS * 4)
                continue
            lines, first_seen = progress_lines(
                before, now, first_seen=first_seen, elapsed=clock() - started
            )
            for line in lines:
                log.info("%s", line)
            if now and all(fill.full for fill in now.values()):
                return
            before = now
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await redis.aclose()
        await db.close()


async def _read(
    settings: Settings, inventory: Inventory, db: AsyncConnectionPool
) -> dict[PoolKey, Fill]:
    """Each configured pool's fill: the default region's pools of every template and any pool
    an operator set, with its minimum (the stored one, else PREVIEW_POOL_MIN)."""
    async with db.connection() as conn:
        targets = {PoolKey(t.template, t.region): t.min_size for t in await list_targets(conn)}
    pools = {PoolKey(t, settings.preview_default_region) for t in settings.templates}
    minimums = {pool: targets.get(pool, settings.preview_pool_min) for pool in pools | set(targets)}
    fills = {}
    for pool, minimum in sorted(
        minimums.items(), key=lambda item: (item[0].template, item[0].region)
    ):
        if minimum == 0:
            continue
        counts = await inventory.counts(pool)
        fills[pool] = Fill(pool, counts.ready, counts.booting, minimum)
    return fills
