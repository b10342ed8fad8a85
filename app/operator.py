"""What `pool status`, `pool set` and `pool delete` do for operators at a shell (the admin API
does the same over HTTP, under the same rules: app/pool_admin.py)."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from app.pool_admin import (
    PoolAdminError,
    bounds_target,
    check_configured,
    check_provider_options,
    merge_change,
    parse_bounds,
    remove_pool,
    resizes_in_place,
    store_bounds,
)
from app.settings import Settings
from pool.services.pool_status import pool_report
from pool.services.targets import tier_bounds
from pool.store.inventory import Inventory, PoolKey
from pool.store.queue import JobQueue
from sql.database import open_pool
from sql.pool_targets import get_target, list_targets


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
    change: dict[str, object],
) -> dict[str, Any]:
    """Change a pool's bounds and guest size: `change` holds what the operator gave, in the
    admin API's body shape (`min`, `max`, `suspended`, `stopped`, `guest`, each optional); the
    rest keeps its stored value. The same rules as `PUT /api/admin/pool/{template}/{region}`
    (app/pool_admin.py raises PoolAdminError with the API's code and words), and options the
    configured provider would ignore are refused. Returns the pool's settings as stored."""
    assert settings.database_url and settings.redis_url
    check_configured(settings, template, region)
    if not change:
        raise PoolAdminError("nothing_to_change", "give at least one bound or the guest size")
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        async with db.connection() as conn:
            stored = await get_target(conn, template, region)
        defaults = (settings.preview_pool_min, settings.preview_pool_max)
        target = bounds_target(
            template, region, parse_bounds(merge_change(change, stored, defaults))
        )
        check_provider_options(settings, change)
        result = await store_bounds(db, Inventory(arq), JobQueue(arq), target, None)
    finally:
        await arq.aclose()
        await db.close()
    now = result.target
    answer: dict[str, Any] = {
        "template": template,
        "region": region,
        "min": now.min_size,
        "max": now.max_size,
        "suspended": {"min": now.suspended_min, "max": now.suspended_max},
        "stopped": {"min": now.stopped_min, "max": now.stopped_max},
        "guest": (
            {"cpus": now.guest_cpus, "memoryMb": now.guest_memory_mb}
            if now.guest_cpus is not None
            else None
        ),
        # Only a provider that resizes machines in place rolls a new size through the pool;
        # elsewhere the machines made from now on get it.
        "rolling": result.rolling and resizes_in_place(settings),
    }
    return answer


def describe_bounds(answer: dict[str, Any]) -> str:
    """`set_pool_bounds`'s answer in a line."""
    line = (
        f"{answer['template']}/{answer['region']}: hot {answer['min']}-{answer['max']}, "
        f"suspended {answer['suspended']['min']}-{answer['suspended']['max']}, "
        f"stopped {answer['stopped']['min']}-{answer['stopped']['max']}"
    )
    if guest := answer["guest"]:
        line += f", guest {guest['cpus']} cpu {guest['memoryMb']} MB"
    line += "; a resize is queued"
    return line + ("; the new guest size is rolling through the pool" if answer["rolling"] else "")


async def delete_pool(settings: Settings, template: str, region: str) -> dict[str, Any]:
    """`DELETE /api/admin/pool/{template}/{region}` at a shell (app.pool_admin.remove_pool)."""
    assert settings.database_url and settings.redis_url
    db = await open_pool(settings.database_url, min_size=1, max_size=1)
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        await remove_pool(db, Inventory(redis), JobQueue(arq), template, region, None)
    finally:
        await arq.aclose()
        await redis.aclose()
        await db.close()
    return {"template": template, "region": region, "min": 0, "max": 0, "removed": True}
