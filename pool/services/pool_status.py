"""The operator's view of the pool: counts, bounds, hit ratio and recent demand per pool."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pool.core.policy import TierBounds
from pool.core.states import Tier
from pool.store.inventory import Inventory, PoolKey

DEMAND_WINDOW_SECONDS = 300


async def pool_report(
    inventory: Inventory,
    *,
    targets: dict[PoolKey, tuple[int, int]],
    default_bounds: tuple[int, int],
    defaults: list[PoolKey],
    tiers: Mapping[PoolKey, TierBounds] | None = None,
) -> list[dict[str, Any]]:
    """One row per pool. `min`/`max`/`ready` are the hot tier's; `suspended` and `stopped`
    count the lower tiers' ready machines, and `tiers` gives each lower tier's bounds (from
    `tiers`, 0/0 when unset) and the leases it served. `createBackoff` is null, or says that
    the pool's creates keep failing: how many runs in a row, when the next may try (Unix
    seconds) and the last error."""
    keys = sorted(
        set(await inventory.pools()) | set(targets) | set(defaults),
        key=lambda k: (k.template, k.region),
    )
    report = []
    for key in keys:
        counts = await inventory.counts(key)
        hits, misses = await inventory.hit_stats(key)
        by_tier = await inventory.tier_hits(key)
        low, high = targets.get(key, default_bounds)
        bounds = (tiers or {}).get(key)
        backoff = await inventory.create_backoff(key)
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
                "moving": counts.moving,
                "suspended": counts.suspended,
                "stopped": counts.stopped,
                "tiers": {
                    tier.value: {
                        "min": bounds.of(tier).min if bounds else 0,
                        "max": bounds.of(tier).max if bounds else 0,
                        "ready": getattr(counts, tier.value),
                        "hits": by_tier[tier],
                    }
                    for tier in (Tier.SUSPENDED, Tier.STOPPED)
                },
                "hits": hits,
                "misses": misses,
                "hitRatio": round(hits / (hits + misses), 4) if hits + misses else None,
                "leaseAttemptsLast5m": await inventory.demand(key, DEMAND_WINDOW_SECONDS),
                "createBackoff": (
                    {
                        "failures": backoff.failures,
                        "retryAt": backoff.retry_at,
                        "error": backoff.error,
                    }
                    if backoff.failures
                    else None
                ),
            }
        )
    return report
