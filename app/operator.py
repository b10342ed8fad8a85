"""What `pool status` and `pool set` do for operators at a shell (the admin API does the same
over HTTP)."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from app.pool_admin import (
    bounds_target,
    check_configured,
    parse_bounds,
    store_bounds,
)
from app.settings import Settings
from pool.services.pool_status import pool_report
from pool.services.targets import tier_bounds
from pool.store.inventory import Inventory, PoolKey
from pool.store.queue import JobQueue
from sql.database import open_pool
from sql.pool_targets import list_targets


async def pool_status(settings: Settings) -> list[dict[str, Any]]:
    assert settings.database_url and settings.redis_url
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with db.connection() as conn:
            targets = await list_targets(conn)
        default_bounds = (settings.preview_pool_min, settings.preview_pool_max)
        return await pool_report(
            Inventory(redis),
            targets={PoolKey(t.template, t.region): (t.min_size, t.max_size) for t in targets},
            default_bounds=default_bounds,
            defaults=[PoolKey(t, settings.preview_default_region) for t in settings.templates],
            tiers={PoolKey(t.template, t.region): tier_bounds(t, default_bounds) for t in targets},
        )
    finally:
        await redis.aclose()
        await db.close()


async def set_pool_bounds(
    settings: Settings,
    template: str,
    region: str,
    min_size: int,
    max_size: int,
    *,
    suspended: tuple[int, int] | None = None,
    stopped: tuple[int, int] | None = None,
    guest: tuple[int, int] | None = None,
) -> str:
    """`min_size`/`max_size` bound the hot tier; `suspended`/`stopped` (min, max) the lower
    tiers and `guest` (cpus, memory_mb) the machines' size, each kept as stored when None. The
    same rules as `PUT /api/admin/pool/{template}/{region}`: app/pool_admin.py raises
    PoolAdminError with the API's code and words."""
    assert settings.database_url and settings.redis_url
    raw: dict[str, object] = {"min": min_size, "max": max_size}
    for tier, pair in (("suspended", suspended), ("stopped", stopped)):
        if pair is not None:
            raw[tier] = {"min": pair[0], "max": pair[1]}
    if guest is not None:
        raw["guest"] = {"cpus": guest[0], "memoryMb": guest[1]}
    check_configured(settings, template, region)
    target = bounds_target(template, region, parse_bounds(raw))
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        result = await store_bounds(db, Inventory(arq), JobQueue(arq), target, None)
    finally:
        await arq.aclose()
        await db.close()
    stored = result.target
    message = (
        f"{template}/{region}: hot {stored.min_size}-{stored.max_size}, "
        f"suspended {stored.suspended_min}-{stored.suspended_max}, "
        f"stopped {stored.stopped_min}-{stored.stopped_max}; a resize is queued"
    )
    return message + ("; the new guest size is rolling through the pool" if result.rolling else "")
