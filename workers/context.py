"""The worker's resources, opened in arq's on_startup and closed in on_shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from pool.core.provider import MachineProvider
from pool.services.context import EnqueueRecycle, PoolServices
from pool.services.metrics import Metrics, make_metrics
from pool.store.inventory import Inventory
from pool.store.leasing import LeaseBroker
from pool.store.queue import JobQueue
from sql.database import open_pool
from workers.config import WorkerConfig


@dataclass
class WorkerContext:
    config: WorkerConfig
    redis: Redis
    arq: ArqRedis
    # Built once: what every pool service a job calls is handed.
    services: PoolServices
    # The metrics were made here (no process-wide ones in the config): closed here.
    owns_metrics: bool = False

    @property
    def db(self) -> AsyncConnectionPool:
        return self.services.db

    @property
    def broker(self) -> LeaseBroker:
        return self.services.broker

    @property
    def inventory(self) -> Inventory:
        return self.services.inventory

    @property
    def provider(self) -> MachineProvider:
        return self.services.provider

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    @property
    def enqueue_recycle(self) -> EnqueueRecycle:
        return self.services.enqueue_recycle

    @classmethod
    async def open(cls, config: WorkerConfig, arq: ArqRedis) -> WorkerContext:
        db = await open_pool(
            config.database_url,
            min_size=1,
            max_size=5,
            acquire_timeout=config.db_acquire_timeout_seconds,
        )
        redis: Redis = Redis.from_url(config.redis_url, decode_responses=True)
        services = PoolServices(
            db=db,
            broker=LeaseBroker(
                redis, pending_ttl_ms=config.pending_ttl_ms, ondemand_max=config.ondemand_max
            ),
            inventory=Inventory(redis),
            provider=config.provider_factory(redis),
            enqueue_recycle=JobQueue(arq).recycle,
            metrics=config.metrics or make_metrics(*config.statsd),
        )
        return cls(
            config=config,
            redis=redis,
            arq=arq,
            services=services,
            owns_metrics=config.metrics is None,
        )

    async def close(self) -> None:
        if self.owns_metrics:
            self.metrics.close()
        await self.provider.aclose()
        await self.redis.aclose()
        await self.db.close()
