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
from sql.pool_targets import PoolTarget, get_target, list_targets, set_target
from workers.jobs import tier_bounds


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
    tiers and `guest` (cpus, memory_mb) the machines' size, each kept as stored when None."""
    assert settings.database_url and settings.redis_url
    if template not in settings.templates:
        raise SettingsError(f"template {template!r} is not one of PREVIEW_TEMPLATES")
    if region not in settings.regions:
        raise SettingsError(
            f"region {region!r} is not PREVIEW_DEFAULT_REGION or one of PREVIEW_REGIONS"
        )
    try:
        for low, high in (min_size, max_size), suspended or (0, 0), stopped or (0, 0):
            PoolBounds(low, high)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if guest is not None and not (1 <= guest[0] <= 16 and 256 <= guest[1] <= 131072):
        raise SettingsError("a guest needs 1-16 cpus and 256-131072 MB of memory")
    target = PoolTarget(
        template,
        region,
        min_size,
        max_size,
        suspended_min=suspended[0] if suspended else None,
        suspended_max=suspended[1] if suspended else None,
        stopped_min=stopped[0] if stopped else None,
        stopped_max=stopped[1] if stopped else None,
        guest_cpus=guest[0] if guest else None,
        guest_memory_mb=guest[1] if guest else None,
    )
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        async with db.connection() as conn:
            before = await get_target(conn, template, region)
            stored = await set_target(conn, target, None)
        await Inventory(arq).add_pool(PoolKey(template, region))
        await JobQueue(arq).resize(template, region)
        rolling = guest is not None and (
            before is None or (before.guest_cpus, before.guest_memory_mb) != guest
        )
        if rolling:
            await JobQueue(arq).resize_guest(template, region)
    finally:
        await arq.aclose()
        await db.close()
    message = (
        f"{template}/{region}: hot {stored.min_size}-{stored.max_size}, "
        f"suspended {stored.suspended_min}-{stored.suspended_max}, "
        f"stopped {stored.stopped_min}-{stored.stopped_max}; a resize is queued"
    )
    return message + ("; the new guest size is rolling through the pool" if rolling else "")
