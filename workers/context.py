"""The worker's resources, opened in arq's on_startup and closed in on_shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from pool.core.provider import MachineProvider
from pool.services.metrics import Metrics, make_metrics
from pool.store.inventory import Inventory
from pool.store.leasing import LeaseBroker
from pool.store.queue import JobQueue
from sql.database import open_pool
from workers.config import WorkerConfig


@dataclass
class WorkerContext:
    config: WorkerConfig
    db: AsyncConnectionPool
    redis: Redis
    arq: ArqRedis
    broker: LeaseBroker
    inventory: Inventory
    provider: MachineProvider
    metrics: Metrics

    async def enqueue_recycle(self, machine_id: str, epoch: int) -> None:
        await JobQueue(self.arq).recycle(machine_id, epoch)

    @classmethod
    async def open(cls, config: WorkerConfig, arq: ArqRedis) -> WorkerContext:
        db = await open_pool(
            config.database_url,
            min_size=1,
            max_size=5,
            acquire_timeout=config.db_acquire_timeout_seconds,
        )
        redis: Redis = Redis.from_url(config.redis_url, decode_responses=True)
        return cls(
            config=config,
            db=db,
            redis=redis,
            arq=arq,
            broker=LeaseBroker(
                redis, pending_ttl_ms=config.pending_ttl_ms, ondemand_max=config.ondemand_max
            ),
            inventory=Inventory(redis),
            provider=config.provider_factory(redis),
            metrics=make_metrics(*config.statsd),
        )

    async def close(self) -> None:
        await self.provider.aclose()
        await self.redis.aclose()
        await self.db.close()
