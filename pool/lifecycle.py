"""After a lease: recycling a used machine, and releasing the machine of an ended session.

A used machine is never handed to another user unreset: it leaves the lease in 'recycling',
the provider resets it (no files, processes or tokens of the session survive), and only then
does it go back to 'ready'. Every step checks the fencing epoch, so a job delivered twice does
its work once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pool.errors import ProviderError
from pool.inventory import Inventory, PoolKey
from pool.leasing import LeaseBroker
from pool.metrics import Metrics
from pool.provider import MachineProvider, MachineState
from pool.refill import destroy_machine
from pool.states import PoolState
from sql.sessions import EndedSession

log = logging.getLogger(__name__)

EnqueueRecycle = Callable[[str, int], Awaitable[None]]


async def release_session_machine(
    broker: LeaseBroker, ended: EndedSession, enqueue_recycle: EnqueueRecycle
) -> None:
    """Release what an ended session held: its machine (to be recycled) or its boot slot."""
    if ended.machine_id is None or ended.epoch is None:
        await broker.forget_session(ended.template, ended.region, ended.id, ended.user_id)
        return
    if await broker.release(ended.machine_id, ended.epoch):
        # release bumped the epoch; the recycle job expects the machine there.
        await enqueue_recycle(ended.machine_id, ended.epoch + 1)


async def recycle_machine(
    inventory: Inventory,
    provider: MachineProvider,
    machine_id: str,
    epoch: int,
    *,
    max_ready: int,
    boot_timeout: float,
    metrics: Metrics,
) -> str:
    """Reset a released machine and return it to the pool, or destroy it when the pool is full
    or the reset fails. Returns what happened ('ready', 'destroyed', 'skipped')."""
    record = await inventory.machine(machine_id)
    if record is None or record.state != PoolState.RECYCLING or record.epoch != epoch:
        return "skipped"  # already recycled (duplicate delivery) or moved on
    pool = PoolKey(record.template, record.region)
    if (await inventory.counts(pool)).ready >= max_ready:
        await destroy_machine(inventory, provider, machine_id)
        metrics.incr("pool.recycle.destroyed")
        return "destroyed"
    try:
        reset = await provider.reset(machine_id)
        # A reset issues a new machine token; the old session's token must stop working.
        await inventory.set_token(machine_id, reset.metadata.get("token"))
        machine = await provider.wait(machine_id, MachineState.STARTED, boot_timeout)
    except ProviderError as exc:
        log.warning("reset of %s failed, destroying it: %s", machine_id, exc)
        await destroy_machine(inventory, provider, machine_id)
        metrics.incr("pool.recycle.failed")
        return "destroyed"
    if (
        await inventory.make_ready(
            machine_id, pool, machine.address, from_state=PoolState.RECYCLING, from_epoch=epoch
        )
        is None
    ):
        return "skipped"
    metrics.incr("pool.recycle.ready")
    return "ready"
