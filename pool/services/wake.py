"""Waking a machine leased from the suspended or stopped tier for its session.

The lease path took the machine (pending, fenced by its epoch), committed the session as
`booting` together with its ledger row, promoted the lease and answered 202. This starts the
machine (a resume from the snapshot, or a boot from the image) and waits until it is healthy,
then makes the session active. If the API died after its commit but before the promotion, the
committed row is proof enough and the lease is promoted here. A session ended meanwhile has
already released the machine; a machine that will not wake fails its session, and the machine
goes to be recycled (reset or destroyed).
"""

from __future__ import annotations

import logging
import time
import uuid

from psycopg_pool import AsyncConnectionPool

from pool.core.errors import ProviderError
from pool.core.provider import MachineProvider
from pool.core.states import PoolState, Tier
from pool.services.lifecycle import EnqueueRecycle, end_and_release
from pool.services.metrics import Metrics
from pool.services.tiers import bring_to
from pool.store.inventory import Inventory
from pool.store.leasing import LeaseBroker
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)


async def wake_for_session(
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    inventory: Inventory,
    provider: MachineProvider,
    session_id: uuid.UUID,
    machine_id: str,
    epoch: int,
    *,
    timeout: float,
    enqueue_recycle: EnqueueRecycle,
    metrics: Metrics,
) -> str:
    """Returns 'active', 'failed', 'ended' (the session ended while the machine woke) or
    'skipped' (nothing to do: a duplicate delivery, or a lease that is not this one)."""
    record = await inventory.machine(machine_id)
    if record is None or record.epoch != epoch or record.session_id != str(session_id):
        return "skipped"
    async with db.connection() as conn:
        session = await sessions.get_session(conn, session_id)
    if (
        session is None
        or session.status != SessionStatus.BOOTING
        or session.container_id != machine_id
        or session.lease_epoch != epoch
    ):
        return "skipped"
    if record.state is PoolState.PENDING:
        # Committed (the row above) but never promoted: the API died in between.
        if not await broker.promote(machine_id, epoch, session_id):
            return "skipped"
    elif record.state is not PoolState.LEASED:
        return "skipped"
    began = time.perf_counter()
    try:
        machine = await bring_to(provider, machine_id, Tier.HOT, timeout)
    except ProviderError as exc:
        log.warning("could not wake %s for %s: %s", machine_id, session_id, exc)
        await end_and_release(
            db,
            broker,
            session_id,
            enqueue_recycle,
            reason="wake_failed",
            status=SessionStatus.FAILED,
        )
        metrics.incr("wake.failed")
        return "failed"
    await inventory.set_token(machine_id, machine.metadata.get("token"))
    async with db.connection() as conn:
        activated = await sessions.activate_session(conn, session_id, machine_id, epoch)
    if activated is None:
        return "ended"  # whoever ended the session released the machine
    metrics.incr(f"wake.{record.tier.value}")
    metrics.timing("wake.duration", (time.perf_counter() - began) * 1000)
    return "active"
