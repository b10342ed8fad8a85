"""Rolling a new guest size (cpus, memory) through a pool's ready machines.

One machine (or `batch` of them) at a time is taken out of its tier (state moving: no lease can
take it), resized by the provider (on Fly: GET, then an update with the whole config and
`current_version`, notes section 2), brought back to what its tier holds (pool.services.tiers) and
put
back in that tier. The rest of the pool keeps serving meanwhile. Leased, pending and recycling
machines are never touched: the recycle after their session resizes them. Machines created
after the operator's change get the new size from the start.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter
from dataclasses import dataclass

from pool.core.errors import MachineNotFound, ProviderError
from pool.core.provider import Guest, SuspendingProvider, guest_of
from pool.core.states import PoolState
from pool.services.context import PoolServices
from pool.services.machines import destroy_machine
from pool.services.refill import RefillSettings
from pool.services.tiers import bring_to
from pool.store.inventory import Inventory, PoolKey

log = logging.getLogger(__name__)

# Machines that became ready during a pass (booting when it began) are caught by the next one.
MAX_PASSES = 3


class Rolled(enum.Enum):
    """What became of one ready machine."""

    RESIZED = "resized"
    CURRENT = "current"  # already the wanted size
    SKIPPED = "skipped"  # leased (or gone) when its turn came
    FAILED = "failed"  # the provider refused; the machine was destroyed


@dataclass(frozen=True)
class RollReport:
    resized: int = 0
    current: int = 0  # already the wanted size
    skipped: int = 0  # leased (or otherwise busy) when its turn came
    failed: int = 0  # the provider refused; the machine was destroyed
    supported: bool = True
    # The deadline came first: the rest of the pool is for the next run.
    unfinished: bool = False


async def roll_guest(
    services: PoolServices,
    pool: PoolKey,
    guest: Guest,
    settings: RefillSettings,
    *,
    batch: int = 1,
    deadline: float | None = None,
) -> RollReport:
    """Resize the pool's ready machines, a batch at a time. With a `deadline` (time.monotonic),
    no batch starts after it: a job stays within its timeout, and a later run goes on (machines
    already resized count as current)."""
    inventory, provider, metrics = services.inventory, services.provider, services.metrics
    if not isinstance(provider, SuspendingProvider):
        return RollReport(supported=False)  # new machines get the size; nothing to roll
    outcomes: Counter[Rolled] = Counter()
    tried: set[str] = set()
    for _ in range(MAX_PASSES):
        ids = [
            r.id
            for r in await inventory.machines(pool)
            if r.state is PoolState.READY and r.id not in tried
        ]
        if not ids:
            break
        tried.update(ids)
        for start in range(0, len(ids), max(batch, 1)):
            if deadline is not None and time.monotonic() >= deadline:
                metrics.incr("pool.resized", outcomes[Rolled.RESIZED])
                return _report(outcomes, unfinished=True)
            chunk = ids[start : start + max(batch, 1)]
            outcomes.update(
                await asyncio.gather(
                    *(_resize_one(inventory, provider, pool, m, guest, settings) for m in chunk)
                )
            )
    metrics.incr("pool.resized", outcomes[Rolled.RESIZED])
    return _report(outcomes)


def _report(outcomes: Counter[Rolled], *, unfinished: bool = False) -> RollReport:
    return RollReport(
        resized=outcomes[Rolled.RESIZED],
        current=outcomes[Rolled.CURRENT],
        skipped=outcomes[Rolled.SKIPPED],
        failed=outcomes[Rolled.FAILED],
        unfinished=unfinished,
    )


async def _resize_one(
    inventory: Inventory,
    provider: SuspendingProvider,
    pool: PoolKey,
    machine_id: str,
    guest: Guest,
    settings: RefillSettings,
) -> Rolled:
    try:
        if guest_of(await provider.get(machine_id)) == guest:
            return Rolled.CURRENT
    except MachineNotFound:
        return Rolled.SKIPPED  # reconcile drops its record
    taken = await inventory.take_machine(machine_id)
    if taken is None:
        return Rolled.SKIPPED  # leased meanwhile: its recycle resizes it
    epoch, tier = taken
    try:
        await provider.resize(machine_id, guest.cpus, guest.memory_mb)
        machine = await bring_to(provider, machine_id, tier, settings.move_timeout)
    except ProviderError as exc:
        log.warning("resizing %s failed, destroying it: %s", machine_id, exc)
        await destroy_machine(inventory, provider, machine_id)
        return Rolled.FAILED
    placed = await inventory.make_ready(
        machine_id,
        pool,
        machine.address,
        from_state=PoolState.MOVING,
        from_epoch=epoch,
        tier=tier,
    )
    return Rolled.RESIZED if placed is not None else Rolled.SKIPPED
