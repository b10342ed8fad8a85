"""Growing and shrinking one pool toward the sizing policy's target.

The decision is pool.policy's (pure); this module gathers its inputs from Redis and carries the
plan out with the provider. A machine is recorded as booting as soon as the provider names it;
a crash in between leaves a provider machine without a record, which reconcile destroys once it
is older than its grace period.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pool.errors import ProviderError
from pool.inventory import Inventory, PoolKey
from pool.metrics import Metrics
from pool.policy import DemandSample, PoolBounds, RefillPlan, SizingInput, plan_refill
from pool.provider import MachineProvider, MachineSpec, MachineState

log = logging.getLogger(__name__)

DEMAND_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class RefillSettings:
    refill_seconds: float
    headroom: float
    max_creates_per_run: int = 4
    boot_timeout: float = 60.0


async def plan_for(
    inventory: Inventory, pool: PoolKey, bounds: PoolBounds, settings: RefillSettings
) -> RefillPlan:
    counts = await inventory.counts(pool)
    demand = await inventory.demand(pool, DEMAND_WINDOW_SECONDS)
    return plan_refill(
        SizingInput(
            bounds=bounds,
            demand=DemandSample(demand, DEMAND_WINDOW_SECONDS),
            refill_seconds=settings.refill_seconds,
            headroom=settings.headroom,
            ready=counts.ready,
            booting=counts.booting,
        ),
        max_creates_per_run=settings.max_creates_per_run,
    )


async def resize_pool(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    bounds: PoolBounds,
    settings: RefillSettings,
    metrics: Metrics,
) -> RefillPlan | None:
    """Carry out the policy's plan for one pool; None when another resize holds the pool."""
    async with inventory.exclusive(pool) as mine:
        if not mine:
            return None
        plan = await _carry_out(inventory, provider, pool, bounds, settings, metrics)
    counts = await inventory.counts(pool)
    metrics.gauge(f"pool.{pool.template}.{pool.region}.ready", counts.ready)
    metrics.gauge(f"pool.{pool.template}.{pool.region}.target", plan.target)
    return plan


async def _carry_out(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    bounds: PoolBounds,
    settings: RefillSettings,
    metrics: Metrics,
) -> RefillPlan:
    plan = await plan_for(inventory, pool, bounds, settings)
    if plan.create:
        results = await asyncio.gather(
            *(boot_into_pool(inventory, provider, pool, settings) for _ in range(plan.create)),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        for failure in failed:
            log.warning("machine creation for %s failed: %s", pool, failure)
        metrics.incr("pool.created", plan.create - len(failed))
        metrics.incr("pool.create_failed", len(failed))
    if plan.destroy:
        for machine_id in await inventory.drain(pool, plan.destroy):
            await destroy_machine(inventory, provider, machine_id)
        metrics.incr("pool.drained", plan.destroy)
    return plan


async def boot_into_pool(
    inventory: Inventory, provider: MachineProvider, pool: PoolKey, settings: RefillSettings
) -> str:
    machine = await create_and_wait(inventory, provider, pool, settings)
    await inventory.make_ready(machine.id, pool, machine.address)
    return machine.id


async def create_and_wait(
    inventory: Inventory, provider: MachineProvider, pool: PoolKey, settings: RefillSettings
) -> MachineSnapshot:
    machine = await provider.create(MachineSpec(pool.template, pool.region))
    await inventory.mark_booting(machine.id, pool)
    await inventory.set_token(machine.id, machine.metadata.get("token"))
    try:
        started = await provider.wait(machine.id, MachineState.STARTED, settings.boot_timeout)
    except ProviderError:
        await destroy_machine(inventory, provider, machine.id)
        raise
    return MachineSnapshot(started.id, started.address)


@dataclass(frozen=True)
class MachineSnapshot:
    id: str
    address: str


async def destroy_machine(inventory: Inventory, provider: MachineProvider, machine_id: str) -> None:
    try:
        await provider.destroy(machine_id)
    finally:
        await inventory.forget(machine_id)
