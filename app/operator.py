"""What `pool status` and `pool set` do for operators at a shell (the admin API does the same
over HTTP)."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from app.settings import Settings, SettingsError
from pool.inventory import Inventory, PoolKey
from pool.policy import PoolBounds
from pool.pool_status import pool_report
from pool.queue import JobQueue
from sql.database import open_pool
from sql.pool_targets import PoolTarget, list_targets, set_target


async def pool_status(settings: Settings) -> list[dict[str, Any]]:
    assert settings.database_url and settings.redis_url
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with db.connection() as conn:
            targets = await list_targets(conn)
        return await pool_report(
            Inventory(redis),
            targets={PoolKey(t.template, t.region): (t.min_size, t.max_size) for t in targets},
            default_bounds=(settings.preview_pool_min, settings.preview_pool_max),
            defaults=[PoolKey(t, settings.preview_default_region) for t in settings.templates],
        )
    finally:
        await redis.aclose()
        await db.close()


async def set_pool_bounds(
    settings: Settings, template: str, region: str, min_size: int, max_size: int
) -> str:
    assert settings.database_url and settings.redis_url
    if template not in settings.templates:
        raise SettingsError(f"template {template!r} is not one of PREVIEW_TEMPLATES")
    try:
        PoolBounds(min_size, max_size)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        async with db.connection() as conn:
            await set_target(conn, PoolTarget(template, region, min_size, max_size), None)
        await Inventory(arq).add_pool(PoolKey(template, region))
        await JobQueue(arq).resize(template, region)
    finally:
        await arq.aclose()
        await db.close()
    return f"{template}/{region}: min {min_size}, max {max_size}; a resize is queued"
