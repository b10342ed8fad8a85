"""On-demand boots: the pool was empty, the session was answered 202 'booting', and this makes
a machine for it. If the session ended meanwhile, the fresh (unused) machine joins the pool."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from psycopg_pool import AsyncConnectionPool

from pool.core.errors import ProviderError
from pool.core.provider import Guest, MachineProvider
from pool.services.lifecycle import EnqueueRecycle, end_and_release
from pool.services.metrics import Metrics
from pool.services.refill import RefillSettings, create_and_wait, destroy_machine
from pool.store.inventory import Inventory, PoolKey
from pool.store.leasing import LeaseBroker
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)


async def boot_for_session(
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    inventory: Inventory,
    provider: MachineProvider,
    session_id: uuid.UUID,
    settings: RefillSettings,
    enqueue_recycle: EnqueueRecycle,
    metrics: Metrics,
    guests: Mapping[PoolKey, Guest | None] | None = None,
) -> str:
    async with db.connection() as conn:
        session = await sessions.get_session(conn, session_id)
    if session is None or session.status != SessionStatus.BOOTING:
        return "skipped"
    pool = PoolKey(session.template, session.region)

    async def fail_boot() -> str:
        await end_and_release(
            db,
            broker,
            session_id,
            enqueue_recycle,
            reason="boot_failed",
            status=SessionStatus.FAILED,
        )
        metrics.incr("ondemand.failed")
        return "failed"

    try:
        guest = (guests or {}).get(pool)
        machine = await create_and_wait(inventory, provider, pool, settings, guest)
    except ProviderError as exc:
        log.warning("on-demand boot for %s failed: %s", session_id, exc)
        return await fail_boot()
    epoch = await inventory.claim_leased(
        machine.id, pool, machine.address, str(session_id), str(session.user_id)
    )
    if epoch is None:
        # The session was ended while we booted: the machine is fresh, so the pool takes it.
        if await inventory.make_ready(machine.id, pool, machine.address) is not None:
            return "pooled"
        # Its record vanished (Redis lost it): without the token hash no agent gets in, so the
        # machine goes, and the session, if it still waits, fails.
        await destroy_machine(inventory, provider, machine.id)
        return await fail_boot()
    async with db.connection() as conn:
        attached = await sessions.attach_machine(conn, session_id, machine.id, epoch)
    if attached is None:
        if await broker.release(machine.id, epoch):
            await enqueue_recycle(machine.id, epoch + 1)
        return "released"
    metrics.incr("ondemand.booted")
    return "attached"
