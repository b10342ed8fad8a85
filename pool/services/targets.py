"""A pool's stored target (`sql.pool_targets`, set by operators) as the pool's own types: its
bounds per tier and its guest size. The resize jobs, the admin API and the CLI read targets the
same way through here."""

from __future__ import annotations

from pool.core.policy import PoolBounds, TierBounds
from pool.core.provider import Guest
from sql.pool_targets import PoolTarget


def tier_bounds(target: PoolTarget | None, default: tuple[int, int]) -> TierBounds:
    """A pool's bounds per tier: the operator's, or the defaults (hot only) when unset."""
    if target is None:
        return TierBounds(hot=PoolBounds(*default))
    return TierBounds(
        hot=PoolBounds(target.min_size, target.max_size),
        suspended=PoolBounds(target.suspended_min or 0, target.suspended_max or 0),
        stopped=PoolBounds(target.stopped_min or 0, target.stopped_max or 0),
    )


def guest_of_target(target: PoolTarget | None) -> Guest | None:
    if target is None or target.guest_cpus is None or target.guest_memory_mb is None:
        return None
    return Guest(target.guest_cpus, target.guest_memory_mb)
