"""Sampling the pools for the dashboard's charts (a worker cron tick every SAMPLE_SECONDS)."""

from __future__ import annotations

from collections.abc import Iterable

from pool.core.pool_history import PoolSample
from pool.store.inventory import Inventory, PoolKey
from pool.store.pool_history import PoolHistory


async def sample_pools(
    inventory: Inventory, history: PoolHistory, pools: Iterable[PoolKey], now: float
) -> int:
    """Record each pool's counts and lease counters as of `now`; the number of pools sampled."""
    samples = []
    for pool in sorted(set(pools)):
        counts = await inventory.counts(pool)
        hits, misses = await inventory.hit_stats(pool)
        samples.append(
            PoolSample(
                at=now,
                template=pool.template,
                region=pool.region,
                hot=counts.ready,
                suspended=counts.suspended,
                stopped=counts.stopped,
                leased=counts.leased,
                booting=counts.booting,
                hits=hits,
                misses=misses,
            )
        )
    await history.record(samples, now)
    return len(samples)
