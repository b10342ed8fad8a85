"""The arq jobs. Each one is idempotent: arq delivers at least once, so every job checks the
state it expects (machine state and fencing epoch, session status) before acting."""

from __future__ import annotations

import uuid
from typing import Any

from pool.edit_log import EditLog, push_snapshot
from pool.inventory import PoolKey
from pool.lifecycle import recycle_machine
from pool.ondemand import boot_for_session
from pool.policy import PoolBounds
from pool.reaper import reap as reap_pool
from pool.reconciler import reconcile as reconcile_pool
from pool.refill import resize_pool
from sql.pool_targets import list_targets
from workers.context import WorkerContext

Ctx = dict[str, Any]


def _deps(ctx: Ctx) -> WorkerContext:
    deps: WorkerContext = ctx["deps"]
    return deps


async def resize(
    ctx: Ctx, template: str | None = None, region: str | None = None
) -> dict[str, Any]:
    """Grow or shrink every pool (or one) toward its policy target."""
    deps = _deps(ctx)
    async with deps.db.connection() as conn:
        targets = {
            PoolKey(t.template, t.region): (t.min_size, t.max_size)
            for t in await list_targets(conn)
        }
    pools = set(targets) | set(deps.config.default_pools) | set(await deps.inventory.pools())
    if template is not None and region is not None:
        pools = {PoolKey(template, region)}
    plans: dict[str, Any] = {}
    for pool in sorted(pools, key=str):
        low, high = targets.get(pool, deps.config.default_bounds)
        plan = await resize_pool(
            deps.inventory,
            deps.provider,
            pool,
            PoolBounds(low, high),
            deps.config.refill,
            deps.metrics,
        )
        plans[str(pool)] = (
            {"target": plan.target, "create": plan.create, "destroy": plan.destroy}
            if plan is not None
            else "busy: another resize holds this pool"
        )
    return plans


async def recycle(ctx: Ctx, machine_id: str, epoch: int) -> str:
    deps = _deps(ctx)
    record = await deps.inventory.machine(machine_id)
    max_ready = deps.config.default_bounds[1]
    if record is not None:
        async with deps.db.connection() as conn:
            for target in await list_targets(conn):
                if (target.template, target.region) == (record.template, record.region):
                    max_ready = target.max_size
    return await recycle_machine(
        deps.inventory,
        deps.provider,
        machine_id,
        epoch,
        max_ready=max_ready,
        boot_timeout=deps.config.refill.boot_timeout,
        metrics=deps.metrics,
    )


async def boot_session(ctx: Ctx, session_id: str) -> str:
    deps = _deps(ctx)
    return await boot_for_session(
        deps.db,
        deps.broker,
        deps.inventory,
        deps.provider,
        uuid.UUID(session_id),
        deps.config.refill,
        deps.enqueue_recycle,
        deps.metrics,
    )


async def reap(ctx: Ctx) -> dict[str, int]:
    deps = _deps(ctx)
    report = await reap_pool(deps.db, deps.broker, deps.enqueue_recycle, deps.metrics)
    return report.__dict__


async def reconcile(ctx: Ctx) -> dict[str, int]:
    deps = _deps(ctx)
    report = await reconcile_pool(
        deps.db, deps.broker, deps.inventory, deps.provider, deps.enqueue_recycle, deps.metrics
    )
    return report.__dict__


async def hydrate_machine(ctx: Ctx, session_id: str, machine_id: str) -> int:
    """Push the session's snapshot to its (new or replaced) machine."""
    deps = _deps(ctx)
    return await push_snapshot(EditLog(deps.redis), session_id, machine_id)
