"""After a lease: recycling a used machine, and releasing the machine of an ended session.

A used machine is never handed to another user unreset: it leaves the lease in 'recycling',
the provider resets it (no files, processes or tokens of the session survive; on Fly a stop and
a start from the image), and only then does it go back to 'ready', in the tier that needs it
most (it is suspended or stopped on the way when that is a lower tier). Every step checks the
fencing epoch, so a job delivered twice does its work once.
"""

from __future__ import annotations

import enum
import logging
import uuid

from pool.core.errors import ProviderError
from pool.core.policy import DemandSample, PoolBounds, TierBounds, place_recycled
from pool.core.provider import (
    Guest,
    Machine,
    MachineProvider,
    MachineState,
    SuspendingProvider,
    guest_of,
)
from pool.core.states import PoolState, Tier
from pool.edits.edit_log import announce_end
from pool.services.context import EnqueueRecycle, PoolServices
from pool.services.machines import destroy_machine
from pool.services.project_files import FileKeeper
from pool.services.refill import RefillSettings, tier_input
from pool.services.tiers import bring_to
from pool.store.inventory import Inventory, PoolKey
from pool.store.leasing import LeaseBroker
from sql import sessions
from sql.sessions import EndedSession
from sql.states import SessionStatus

log = logging.getLogger(__name__)


class Recycled(enum.Enum):
    """What became of a released machine."""

    READY = "ready"  # back in the hot tier
    SUSPENDED = "suspended"
    STOPPED = "stopped"
    DESTROYED = "destroyed"  # every tier full, or the reset failed
    SKIPPED = "skipped"  # not this run's to recycle: a duplicate delivery, or moved on

    @classmethod
    def into(cls, tier: Tier) -> Recycled:
        return cls.READY if tier is Tier.HOT else cls(tier.value)


async def release_session_machine(
    broker: LeaseBroker,
    ended: EndedSession,
    enqueue_recycle: EnqueueRecycle,
    *,
    keeper: FileKeeper,
) -> None:
    """Tell the session's editors it ended (pool.edits.edit_log.announce_end: from then on none of
    its patches is acked), release what it held: its machine (to be recycled) or its boot slot,
    then keep its files for its project (pool.services.project_files: never raises, so the end
    goes through whatever becomes of them)."""
    files = await announce_end(
        broker.redis, str(ended.id), ended.reason, ended.status.value, prefix=broker.prefix
    )
    try:
        if ended.machine_id is None or ended.epoch is None:
            await broker.forget_session(ended.template, ended.region, ended.id, ended.user_id)
        elif await broker.release(ended.machine_id, ended.epoch):
            # release bumped the epoch; the recycle job expects the machine there.
            await enqueue_recycle(ended.machine_id, ended.epoch + 1)
    finally:
        # The files left Redis with the announce: kept now, even if the release failed.
        await keeper.keep_ended(ended, files)


async def end_and_release(
    services: PoolServices, session_id: uuid.UUID, *, reason: str, status: SessionStatus
) -> bool:
    """End a session (Postgres) and release what it held (Redis). False when it had already
    ended: whoever ended it released it."""
    async with services.db.connection() as conn:
        ended = await sessions.end_session(conn, session_id, reason=reason, status=status)
    if ended is None:
        return False
    await release_session_machine(
        services.broker, ended, services.enqueue_recycle, keeper=services.keeper
    )
    return True


async def recycle_machine(
    services: PoolServices,
    machine_id: str,
    epoch: int,
    *,
    bounds: PoolBounds | TierBounds,
    settings: RefillSettings,
    guest: Guest | None = None,
    demand: DemandSample | None = None,
) -> Recycled:
    """Reset a released machine and return it to the tier that needs it most (policy
    place_recycled), or destroy it when every tier is full or the reset fails. A machine whose
    guest differs from the pool's `guest` (a rolling resize went by while it was leased) is
    resized on the way."""
    inventory, provider, metrics = services.inventory, services.provider, services.metrics
    record = await inventory.machine(machine_id)
    if record is None or record.state != PoolState.RECYCLING or record.epoch != epoch:
        return Recycled.SKIPPED  # already recycled (duplicate delivery) or moved on
    # This run owns the machine from now: reconcile replaces a recycling machine only once its
    # owner has been silent for longer than a job may run (its worker died).
    if await inventory.stamp(machine_id, PoolState.RECYCLING, "taken_at", epoch=epoch) is None:
        return Recycled.SKIPPED
    pool = PoolKey(record.template, record.region)
    if await _placement(inventory, provider, pool, bounds, settings, demand) is None:
        await destroy_machine(inventory, provider, machine_id)
        metrics.incr("pool.recycle.destroyed")
        return Recycled.DESTROYED
    try:
        reset = await provider.reset(machine_id)
        # A reset issues a new machine token; the old session's token must stop working.
        if not await inventory.set_token(machine_id, reset.metadata.get("token")):
            raise ProviderError(f"no record (or no new token) for {machine_id} after its reset")
        machine = await provider.wait(machine_id, MachineState.STARTED, settings.boot_timeout)
        machine = await _apply_guest(provider, machine, guest, settings.boot_timeout)
        # Counts may have moved during the reset: decide the tier now.
        tier = await _placement(inventory, provider, pool, bounds, settings, demand)
        if tier is not None and tier is not Tier.HOT:
            machine = await bring_to(provider, machine_id, tier, settings.move_timeout)
    except ProviderError as exc:
        log.warning("reset of %s failed, destroying it: %s", machine_id, exc)
        await destroy_machine(inventory, provider, machine_id)
        metrics.incr("pool.recycle.failed")
        return Recycled.DESTROYED
    if tier is None:
        await destroy_machine(inventory, provider, machine_id)
        metrics.incr("pool.recycle.destroyed")
        return Recycled.DESTROYED
    placed = await inventory.make_ready(
        machine_id,
        pool,
        machine.address,
        from_state=PoolState.RECYCLING,
        from_epoch=epoch,
        tier=tier,
    )
    if placed is None:
        return Recycled.SKIPPED
    recycled = Recycled.into(tier)
    metrics.incr(f"pool.recycle.{recycled.value}")
    return recycled


async def _placement(
    inventory: Inventory,
    provider: MachineProvider,
    pool: PoolKey,
    bounds: PoolBounds | TierBounds,
    settings: RefillSettings,
    demand: DemandSample | None,
) -> Tier | None:
    return place_recycled(await tier_input(inventory, provider, pool, bounds, settings, demand))


async def _apply_guest(
    provider: MachineProvider, machine: Machine, guest: Guest | None, timeout: float
) -> Machine:
    """Resize a machine whose guest is not the pool's (it was leased while a rolling resize
    went by). Only providers that report and change the guest in place take part."""
    current = guest_of(machine)
    if guest is None or current is None or current == guest:
        return machine
    if not isinstance(provider, SuspendingProvider):
        return machine
    await provider.resize(machine.id, guest.cpus, guest.memory_mb)
    return await bring_to(provider, machine.id, Tier.HOT, timeout)
