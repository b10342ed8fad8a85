"""Growing, shrinking and re-tiering one pool toward the sizing policy's targets.

The decision is pool.core.policy's (pure, plan_tiers); this module gathers its inputs from Redis and
carries the plan out with the provider: creates (new machines boot into the hot tier), moves
between tiers (pool.services.tiers: suspend, stop, resume or start a ready machine taken out of the
lease
lists meanwhile), and destroys of surplus. A machine is recorded as booting as soon as the
provider names it; a crash in between leaves a provider machine without a record, which
reconcile destroys once it is older than its grace period. A crash mid-boot or mid-move leaves a
`booting` or `moving` record, which reconcile destroys once it is older than the job timeout.
A machine whose record vanished while it booted (Redis lost it) is destroyed, not pooled: its
record would lack the token hash.

Creates for a pool that keep failing back off (pool.core.create_backoff): after a run whose creates
all failed, no create before a capped exponential delay, then one probe, and full speed again as
soon as a machine comes up.

A provider that cannot suspend (local processes) keeps the hot tier only: the policy then gives
the lower tiers no machines, and the plan is the hot-only plan it always was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pool.core.create_backoff import CreateBackoff, after_failure
from pool.core.errors import ProviderError, UnknownMachine
from pool.core.policy import (
    DEFAULT_COSTS,
    FLY_LATENCIES,
    DemandSample,
    PoolBounds,
    TierBounds,
    TierCosts,
    TierInput,
    TierLatencies,
    TierPlan,
    plan_tiers,
)
from pool.core.provider import Guest, MachineProvider, MachineSpec, MachineState, pool_tiers
from pool.core.states import TIERS, PoolState, Tier
from pool.services.context import PoolServices
from pool.services.machines import destroy_machine
from pool.services.metrics import Metrics
from pool.services.tiers import bring_to
from pool.store.inventory import Inventory, PoolKey

log = logging.getLogger(__name__)

DEMAND_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class RefillSettings:
    refill_seconds: float
    headroom: float
    max_creates_per_run: int = 4
    boot_timeout: float = 60.0
    # The tiers: how fast each one serves, what it costs idle, how many moves one run makes.
    latencies: TierLatencies = FLY_LATENCIES
    costs: TierCosts = DEFAULT_COSTS
    max_moves_per_run: int = 8
    # Suspending a machine with a large memory takes over 15 s (Fly community reports).
    move_timeout: float = 60.0
    # The per-pool resize lock expires this long after its holder died: the resize job's
    # timeout, so a killed worker stalls its pools' refill no longer than a job may run.
    resize_lock_seconds: float = 120.0
    # Creates that keep failing: the first wait, doubled per failed run up to the cap.
    create_backoff_seconds: float = 5.0
    create_backoff_max_seconds: float = 300.0


def as_tier_bounds(bounds: PoolBounds | TierBounds) -> TierBounds:
    return bounds if isinstance(bounds, TierBounds) else TierBounds(hot=bounds)


async def tier_input(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    bounds: PoolBounds | TierBounds,
    settings: RefillSettings,
    demand: DemandSample | None = None,
) -> TierInput:
    """The policy's view of one pool now. `demand` overrides the measured lease rate (a
    simulation on a virtual clock measures its own)."""
    supply = await inventory.supply(pool)
    if demand is None:
        count = await inventory.demand(pool, DEMAND_WINDOW_SECONDS)
        demand = DemandSample(count, DEMAND_WINDOW_SECONDS)
    return TierInput(
        bounds=as_tier_bounds(bounds),
        demand=demand,
        refill_seconds=settings.refill_seconds,
        headroom=settings.headroom,
        ready=supply.ready,
        arriving=supply.arriving,
        latencies=settings.latencies,
        tiers=pool_tiers(provider),
        costs=settings.costs,
    )


async def plan_for(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    bounds: PoolBounds | TierBounds,
    settings: RefillSettings,
    demand: DemandSample | None = None,
) -> TierPlan:
    return plan_tiers(
        await tier_input(inventory, provider, pool, bounds, settings, demand),
        max_creates_per_run=settings.max_creates_per_run,
        max_moves_per_run=settings.max_moves_per_run,
    )


async def resize_pool(
    services: PoolServices,
    pool: PoolKey,
    bounds: PoolBounds | TierBounds,
    settings: RefillSettings,
    *,
    guest: Guest | None = None,
    demand: DemandSample | None = None,
    clock: Callable[[], float] = time.time,
) -> TierPlan | None:
    """Carry out the policy's plan for one pool, less the creates its create backoff holds
    back; returns what was carried out, or None when another resize holds the pool."""
    inventory, provider, metrics = services.inventory, services.provider, services.metrics
    async with inventory.exclusive(f"resize:{pool}", ttl=settings.resize_lock_seconds) as mine:
        if not mine:
            return None
        plan = await plan_for(inventory, provider, pool, bounds, settings, demand)
        backoff = await inventory.create_backoff(pool)
        now = clock()
        creates = backoff.allowed_creates(plan.create, now)
        if creates < plan.create:
            log.info(
                "creates for %s held back (%d failed runs in a row; next try in %.0fs): %s",
                pool,
                backoff.failures,
                max(backoff.retry_at - now, 0.0),
                backoff.error,
            )
        plan = dataclasses.replace(plan, create=creates)
        outcome = await _carry_out(inventory, provider, pool, plan, settings, metrics, guest)
        # The wait counts from the failure, not from the start of the run.
        await _note_creates(inventory, pool, backoff, outcome, settings, clock())
    counts = await inventory.counts(pool)
    metrics.pool_sizes(
        pool.template,
        pool.region,
        ready={"hot": counts.ready, "suspended": counts.suspended, "stopped": counts.stopped},
        targets={tier.value: plan.targets.get(tier) for tier in TIERS},
        leased=counts.leased,
        booting=counts.booting,
    )
    return plan


@dataclass(frozen=True)
class CreateOutcome:
    came_up: int = 0
    # Failures of the provider (the template or image, or the provider itself); a machine
    # whose record vanished while it booted is not one.
    provider_errors: list[ProviderError] = dataclasses.field(default_factory=list)


async def _note_creates(
    inventory: Inventory,
    pool: PoolKey,
    backoff: CreateBackoff,
    outcome: CreateOutcome,
    settings: RefillSettings,
    now: float,
) -> None:
    """Keep the pool's create backoff: cleared when a create came up, longer when none did and
    the provider failed them."""
    if outcome.came_up > 0:
        if backoff.failures:
            log.info("creates for %s work again after %d failed runs", pool, backoff.failures)
            await inventory.set_create_backoff(pool, CreateBackoff())
        return
    if outcome.provider_errors:
        later = after_failure(
            backoff,
            str(outcome.provider_errors[-1]),
            now,
            base=settings.create_backoff_seconds,
            cap=settings.create_backoff_max_seconds,
        )
        log.warning(
            "every create for %s failed (%d runs in a row), next try in %.0fs: %s",
            pool,
            later.failures,
            later.retry_at - now,
            later.error,
        )
        await inventory.set_create_backoff(pool, later)


async def _carry_out(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    plan: TierPlan,
    settings: RefillSettings,
    metrics: Metrics,
    guest: Guest | None,
) -> CreateOutcome:
    creates = [
        boot_into_pool(inventory, provider, pool, settings, guest) for _ in range(plan.create)
    ]
    moves = []
    moving: list[tuple[Tier, Tier]] = []
    for move in plan.moves:
        for machine_id, epoch in await inventory.take_for_move(
            pool, move.source, move.target, move.count
        ):
            moving.append((move.source, move.target))
            moves.append(
                move_machine(inventory, provider, pool, machine_id, epoch, move.target, settings)
            )
    created, moved = await asyncio.gather(
        asyncio.gather(*creates, return_exceptions=True),
        asyncio.gather(*moves, return_exceptions=True),
    )
    failed = [r for r in created if isinstance(r, BaseException)]
    for failure in failed:
        log.warning("machine creation for %s failed: %s", pool, failure)
    metrics.incr("pool.created", plan.create - len(failed))
    metrics.incr("pool.create_failed", len(failed))
    for (source, target), outcome in zip(moving, moved, strict=True):
        if outcome is True:
            metrics.incr(f"pool.moved.{source.value}.{target.value}")
        else:
            metrics.incr("pool.move_failed")
            if isinstance(outcome, BaseException):
                log.warning("moving a machine of %s to %s failed: %s", pool, target, outcome)
    for tier in TIERS:
        count = plan.destroy.get(tier)
        if count:
            for machine_id in await inventory.drain(pool, count, tier):
                await destroy_machine(inventory, provider, machine_id)
            metrics.incr("pool.drained", count)
    return CreateOutcome(
        came_up=plan.create - len(failed),
        provider_errors=[f for f in failed if isinstance(f, ProviderError)],
    )


async def move_machine(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    machine_id: str,
    epoch: int,
    target: Tier,
    settings: RefillSettings,
) -> bool:
    """Bring a machine taken out for a move (state moving at `epoch`) into `target` and put it
    back in the pool there. A machine the provider cannot move is destroyed: it was ready and
    unused, so nothing is lost but the machine. False when it did not land."""
    try:
        machine = await bring_to(provider, machine_id, target, settings.move_timeout)
    except ProviderError as exc:
        log.warning("could not bring %s to %s, destroying it: %s", machine_id, target, exc)
        await destroy_machine(inventory, provider, machine_id)
        return False
    landed = await inventory.make_ready(
        machine_id,
        pool,
        machine.address,
        from_state=PoolState.MOVING,
        from_epoch=epoch,
        tier=target,
    )
    return landed is not None


async def boot_into_pool(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    settings: RefillSettings,
    guest: Guest | None = None,
) -> str:
    """Create a machine and make it ready in the hot tier (the refill moves surplus down).
    UnknownMachine when its record vanished meanwhile (Redis lost it, or reconcile gave up on
    the boot): the machine is destroyed, since it is no longer known to be ours."""
    machine = await create_and_wait(inventory, provider, pool, settings, guest)
    if await inventory.make_ready(machine.id, pool, machine.address) is None:
        await destroy_machine(inventory, provider, machine.id)
        raise UnknownMachine(f"the record of {machine.id} vanished while it booted")
    return machine.id


def spec_for(pool: PoolKey, guest: Guest | None) -> MachineSpec:
    if guest is None:
        return MachineSpec(pool.template, pool.region)
    return MachineSpec(pool.template, pool.region, cpus=guest.cpus, memory_mb=guest.memory_mb)


async def create_and_wait(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    settings: RefillSettings,
    guest: Guest | None = None,
) -> MachineSnapshot:
    machine = await provider.create(spec_for(pool, guest))
    token = machine.metadata.get("token")
    if not token:
        await provider.destroy(machine.id)
        raise ProviderError(f"machine {machine.id} was created without a token")
    await inventory.mark_booting(machine.id, pool, token)
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
