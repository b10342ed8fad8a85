"""The web process's resources, opened in Starlette's lifespan and closed on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from arq.connections import ArqRedis, RedisSettings, create_pool
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from app.auth import JwksCache, TokenVerifier
from app.realtime.hub import Hub
from app.realtime.machine_stats import MachineReports
from app.rollout.decision import FlagSet
from app.rollout.flag_cache import FlagCache, flag_set
from app.settings import Settings
from pool.edits.edit_log import EditLog, EditLogLimits
from pool.edits.script_batcher import ScriptBatcher
from pool.services.metrics import Metrics, make_metrics
from pool.services.project_files import FileKeeper, PostgresProjectFiles
from pool.store.inventory import Inventory
from pool.store.keys import DEFAULT_PREFIX, Keys
from pool.store.leasing import LeaseBroker
from pool.store.queue import JobQueue
from sql.database import open_pool
from sql.flags import load_flags


@dataclass
class Resources:
    settings: Settings
    db: AsyncConnectionPool
    redis: Redis
    arq: ArqRedis
    jobs: JobQueue
    broker: LeaseBroker
    inventory: Inventory
    verifier: TokenVerifier
    metrics: Metrics
    token_secret: bytes
    edits: EditLog
    hub: Hub
    flags: FlagCache
    machine_reports: MachineReports

    @property
    def keeper(self) -> FileKeeper:
        """Where ended sessions' files are kept for their projects (as the worker's
        PoolServices.keeper)."""
        return FileKeeper(PostgresProjectFiles(self.db), self.metrics, self.edits.limits)


@asynccontextmanager
async def open_resources(
    settings: Settings, metrics: Metrics | None = None
) -> AsyncIterator[Resources]:
    """`metrics`: the process's (the entry point's, which serves them); else a new one."""
    settings.require_web_config()
    assert settings.database_url and settings.redis_url and settings.preview_token_secret
    own_metrics = metrics is None
    db = await open_pool(
        settings.database_url,
        max_size=settings.preview_db_pool_size,
        acquire_timeout=settings.preview_db_acquire_timeout_seconds,
    )
    redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
    arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    http = httpx.AsyncClient(timeout=5.0)
    hub = Hub(redis, prefix=DEFAULT_PREFIX)
    await hub.start()
    if metrics is None:
        metrics = make_metrics(
            settings.preview_statsd_host,
            settings.preview_statsd_port,
            settings.preview_statsd_prefix,
        )
    batcher = ScriptBatcher(redis)
    await batcher.start()

    async def load_flag_set() -> FlagSet:
        async with db.connection() as conn:
            return flag_set(await load_flags(conn))

    flags = FlagCache(
        load_flag_set,
        redis,
        Keys(DEFAULT_PREFIX).flags_channel,
        ttl=settings.preview_flags_cache_seconds,
    )
    try:
        await flags.start()
        jwks = JwksCache(settings.jwks_url, http) if settings.jwks_url else None
        secret = settings.supabase_jwt_secret
        yield Resources(
            settings=settings,
            db=db,
            redis=redis,
            arq=arq,
            jobs=JobQueue(arq),
            broker=LeaseBroker(
                redis,
                pending_ttl_ms=int(settings.preview_pending_ttl_seconds * 1000),
                ondemand_max=settings.preview_ondemand_max,
            ),
            inventory=Inventory(redis),
            verifier=TokenVerifier(
                hs256_secret=secret.get_secret_value() if secret else None, jwks=jwks
            ),
            metrics=metrics,
            token_secret=settings.preview_token_secret.get_secret_value().encode(),
            edits=EditLog(
                redis,
                batcher=batcher,
                limits=EditLogLimits(
                    stream_bytes=settings.preview_edit_stream_bytes,
                    user_budget_bytes=settings.preview_edit_user_budget_bytes,
                ),
            ),
            hub=hub,
            flags=flags,
            # Local machines are sampled by the worker (app.realtime.machine_stats).
            machine_reports=MachineReports(
                metrics, usage_from_agents=settings.preview_provider != "local"
            ),
        )
    finally:
        await flags.stop()
        if own_metrics:
            metrics.close()
        await batcher.stop()
        await hub.stop()
        await http.aclose()
        await arq.aclose()
        await redis.aclose()
        await db.close()
