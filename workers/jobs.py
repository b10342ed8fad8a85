"""The arq jobs. Each one is idempotent: arq delivers at least once, so every job checks the
state it expects (machine state and fencing epoch, session status) before acting."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from arq import Retry

from pool.core.policy import TierPlan
from pool.edits.edit_log import EditLog, push_snapshot
from pool.providers.local import LocalProvider
from pool.services.alerts import AlertEvaluator
from pool.services.lifecycle import recycle_machine
from pool.services.metrics import MachineSample
from pool.services.ondemand import boot_for_session
from pool.services.pool_history import sample_pools as sample_pool_history
from pool.services.reaper import reap as reap_pool
from pool.services.reconciler import reconcile as reconcile_pool
from pool.services.refill import resize_pool
from pool.services.rolling import roll_guest
from pool.services.targets import guest_of_target, tier_bounds
from pool.services.wake import wake_for_session
from pool.store.inventory import PoolKey
from pool.store.pool_history import PoolHistory
from pool.store.store_identity import forget_store_identity, store_was_reset
from sql.pool_targets import PoolTarget, list_targets
from workers.context import WorkerContext

Ctx = dict[str, Any]

log = logging.getLogger(__name__)


def _deps(ctx: Ctx) -> WorkerContext:
    deps: WorkerContext = ctx["deps"]
    return deps


async def _targets(deps: WorkerContext) -> dict[PoolKey, PoolTarget]:
    async with deps.db.connection() as conn:
        return {PoolKey(t.template, t.region): t for t in await list_targets(conn)}


def _describe(plan: TierPlan) -> dict[str, Any]:
    described: dict[str, Any] = {
        "target": plan.target,
        "create": plan.create,
        "destroy": plan.destroy.total,
    }
    if plan.moves or plan.targets.hot != plan.target:  # a tiered pool: say what each tier got
        described["targets"] = {
            "hot": plan.targets.hot,
            "suspended": plan.targets.suspended,
            "stopped": plan.targets.stopped,
        }
        described["moves"] = [
            {"from": m.source.value, "to": m.target.value, "count": m.count} for m in plan.moves
        ]
    return described


async def resize(
    ctx: Ctx, template: str | None = None, region: str | None = None
) -> dict[str, Any]:
    """Grow, shrink and re-tier every pool (or one) toward its policy targets."""
    deps = _deps(ctx)
    targets = await _targets(deps)
    pools = set(targets) | set(deps.config.default_pools) | set(await deps.inventory.pools())
    if template is not None and region is not None:
        pools = {PoolKey(template, region)}
    plans: dict[str, Any] = {}
    for pool in sorted(pools, key=str):
        target = targets.get(pool)
        plan = await resize_pool(
            deps.services,
            pool,
            tier_bounds(target, deps.config.default_bounds),
            deps.config.refill,
            guest=guest_of_target(target),
        )
        plans[str(pool)] = (
            _describe(plan) if plan is not None else "busy: another resize holds this pool"
        )
    return plans


# The jobs below return their service's typed outcome as its plain value: arq logs and pickles
# a job's result, and a string reads the same in any version of the code that unpickles it.


async def recycle(ctx: Ctx, machine_id: str, epoch: int) -> str:
    deps = _deps(ctx)
    record = await deps.inventory.machine(machine_id)
    target = None
    if record is not None:
        target = (await _targets(deps)).get(PoolKey(record.template, record.region))
    recycled = await recycle_machine(
        deps.services,
        machine_id,
        epoch,
        bounds=tier_bounds(target, deps.config.default_bounds),
        settings=deps.config.refill,
        guest=guest_of_target(target),
    )
    return recycled.value


async def boot_session(ctx: Ctx, session_id: str) -> str:
    deps = _deps(ctx)
    booted = await boot_for_session(
        deps.services,
        uuid.UUID(session_id),
        deps.config.refill,
        guests={pool: guest_of_target(t) for pool, t in (await _targets(deps)).items()},
        restore_timeout=deps.config.restore_timeout_seconds,
    )
    return booted.value


async def wake_machine(ctx: Ctx, session_id: str, machine_id: str, epoch: int) -> str:
    """Start (resume) a machine leased from the suspended or stopped tier; then its session,
    answered 202 `booting`, becomes active."""
    deps = _deps(ctx)
    woken = await wake_for_session(
        deps.services,
        uuid.UUID(session_id),
        machine_id,
        epoch,
        timeout=deps.config.refill.boot_timeout,
        restore_timeout=deps.config.restore_timeout_seconds,
    )
    return woken.value


async def resize_guest(ctx: Ctx, template: str, region: str) -> dict[str, Any]:
    """Roll the pool's configured guest size through its ready machines, one at a time."""
    deps = _deps(ctx)
    pool = PoolKey(template, region)
    guest = guest_of_target((await _targets(deps)).get(pool))
    if guest is None:
        return {"pool": str(pool), "skipped": "no guest size is set for this pool"}
    report = await roll_guest(
        deps.services,
        pool,
        guest,
        deps.config.refill,
        deadline=time.monotonic() + deps.config.job_timeout_seconds / 2,
    )
    if report.unfinished:
        raise Retry(defer=1)  # the rest of the pool in the next try, within its own timeout
    done = {k: v for k, v in report.__dict__.items() if k != "unfinished"}
    return {"pool": str(pool), **done}


async def reap(ctx: Ctx) -> dict[str, int]:
    deps = _deps(ctx)
    if await store_was_reset(deps.redis):
        # Redis lost its data (or starts empty): live sessions' machines have no records, so
        # their previews cannot be routed until reconcile rebuilds them. Do it now.
        log.warning("Redis holds no store identity: it lost its data or is new; reconciling now")
        try:
            await reconcile(ctx, orphan_grace_seconds=STORE_RESET_ORPHAN_GRACE_SECONDS)
        except BaseException:
            await forget_store_identity(deps.redis)  # the next tick tries again
            raise
    report = await reap_pool(deps.services, idle_warning_seconds=deps.config.idle_warning_seconds)
    return report.__dict__


# After a store reset every machine the pool held (warm, suspended, stopped) has lost its record
# at once; those older than this are gone from the pool for good and are replaced now. Younger
# ones may be a refill's machine between its create and its first record: the next scheduled
# reconcile decides, with the usual grace.
STORE_RESET_ORPHAN_GRACE_SECONDS = 15.0


async def reconcile(ctx: Ctx, *, orphan_grace_seconds: float | None = None) -> dict[str, int]:
    deps = _deps(ctx)
    config = deps.config
    grace = config.orphan_grace_seconds if orphan_grace_seconds is None else orphan_grace_seconds
    report = await reconcile_pool(
        deps.services,
        orphan_grace_seconds=grace,
        stuck_seconds=config.job_timeout_seconds,
        agent_lost_seconds=config.agent_lost_seconds,
    )
    # Housekeeping on the same tick: projects' last files past their retention (they are
    # never read once expired; this frees the space).
    pruned = await deps.services.keeper.store.prune(
        max_age_seconds=config.snapshot_retention_seconds
    )
    return {**report.__dict__, "project_files_pruned": pruned}


async def sample_machines(ctx: Ctx) -> int:
    """Every local machine's CPU time and memory into the metrics (a cron tick); the number
    sampled. Fly machines are not read from here: their agents report (docs/metrics.md)."""
    deps = _deps(ctx)
    if not isinstance(deps.provider, LocalProvider):
        return 0
    usage = await asyncio.to_thread(deps.provider.usage)
    deps.metrics.machines(
        (MachineSample(m, u.cpu_seconds, u.memory_bytes) for m, u in usage.items()),
        complete=True,
    )
    return len(usage)


async def sample_pools(ctx: Ctx) -> int:
    """Every pool's counts into the dashboard's history (a cron tick); the number sampled."""
    deps = _deps(ctx)
    pools = set(await _targets(deps)) | set(deps.config.default_pools)
    pools |= set(await deps.inventory.pools())
    return await sample_pool_history(deps.inventory, PoolHistory(deps.redis), pools, time.time())


async def evaluate_alerts(ctx: Ctx) -> dict[str, Any]:
    """The alert rules judged in process and posted to the webhook (pool.services.alerts)."""
    deps = _deps(ctx)
    evaluator = ctx.get("alerts")
    if evaluator is None:  # kept across ticks: it remembers a Redis outage it announced
        evaluator = ctx["alerts"] = AlertEvaluator(
            deps.redis, deps.db, deps.metrics, deps.config.alert_webhook_url
        )
    report = await evaluator.tick()
    return report.__dict__


async def hydrate_machine(ctx: Ctx, session_id: str, machine_id: str) -> int:
    """Push the session's snapshot to its (new or replaced) machine."""
    deps = _deps(ctx)
    return await push_snapshot(EditLog(deps.redis), session_id, machine_id)
