"""The operator's view of the pool: counts, bounds, hit ratio and recent demand per pool."""

from __future__ import annotations

from typing import Any

from pool.inventory import Inventory, PoolKey

DEMAND_WINDOW_SECONDS = 300


async def pool_report(
    inventory: Inventory,
    *,
    targets: dict[PoolKey, tuple[int, int]],
    default_bounds: tuple[int, int],
    defaults: list[PoolKey],
) -> list[dict[str, Any]]:
    keys = sorted(
        set(await inventory.pools()) | set(targets) | set(defaults),
        key=lambda k: (k.template, k.region),
    )
    report = []
    for key in keys:
        counts = await inventory.counts(key)
        hits, misses = await inventory.hit_stats(key)
        low, high = targets.get(key, default_bounds)
        report.append(
            {
                "template": key.template,
                "region": key.region,
                "min": low,
                "max": high,
                "operatorSet": key in targets,
                "ready": counts.ready,
                "booting": counts.booting,
                "pending": counts.pending,
                "leased": counts.leased,
                "recycling": counts.recycling,
                "draining": counts.draining,
                "hits": hits,
                "misses": misses,
                "hitRatio": round(hits / (hits + misses), 4) if hits + misses else None,
                "leaseAttemptsLast5m": await inventory.demand(key, DEMAND_WINDOW_SECONDS),
            }
        )
    return report
