"""Waking a machine leased from the suspended or stopped tier for its session.

The lease path took the machine (pending, fenced by its epoch), committed the session as
`booting` together with its ledger row, promoted the lease and answered 202. This starts the
machine (a resume from the snapshot, or a boot from the image) and waits until it is healthy,
then makes the session active (a session started from its project's last files once the
machine applied them, pool.services.project_files). If the API died after its commit but before the
committed row is proof enough and the lease is promoted here. A session ended meanwhile has
already released the machine; a machine that will not wake fails its session, and the machine
goes to be recycled (reset or destroyed).
"""

from __future__ import annotations

import enum
import logging
import time
import uuid

from pool.core.errors import ProviderError
from pool.core.states import PoolState, Tier
from pool.services.context import PoolServices
from pool.services.fallbacks import WAKE_FAILED, record_start_failure
from pool.services.lifecycle import end_and_release
from pool.services.project_files import RESTORE_TIMEOUT_SECONDS, hydrate_if_restored
from pool.services.tiers import bring_to
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)


class Woken(enum.Enum):
    """What a wake did for its session."""

    ACTIVE = "active"
    FAILED = "failed"  # the machine would not wake: the session failed, the machine recycles
    ENDED = "ended"  # the session ended while the machine woke
    SKIPPED = "skipped"  # nothing to do: a duplicate delivery, or a lease that is not this one


async def wake_for_session(
    services: PoolServices,
    session_id: uuid.UUID,
    machine_id: str,
    epoch: int,
    *,
    timeout: float,
    restore_timeout: float = RESTORE_TIMEOUT_SECONDS,
) -> Woken:
    record = await services.inventory.machine(machine_id)
    if record is None or record.epoch != epoch or record.session_id != str(session_id):
        return Woken.SKIPPED
    async with services.db.connection() as conn:
        session = await sessions.get_session(conn, session_id)
    if (
        session is None
        or session.status != SessionStatus.BOOTING
        or session.machine_id != machine_id
        or session.lease_epoch != epoch
    ):
        return Woken.SKIPPED
    if record.state is PoolState.PENDING:
        # Committed (the row above) but never promoted: the API died in between.
        if not await services.broker.promote(machine_id, epoch, session_id):
            return Woken.SKIPPED
    elif record.state is not PoolState.LEASED:
        return Woken.SKIPPED
    began = time.perf_counter()
    try:
        machine = await bring_to(services.provider, machine_id, Tier.HOT, timeout)
    except ProviderError as exc:
        log.warning("could not wake %s for %s: %s", machine_id, session_id, exc)
        if await end_and_release(
            services, session_id, reason=WAKE_FAILED, status=SessionStatus.FAILED
        ):
            await record_start_failure(services, session_id, WAKE_FAILED)
        services.metrics.incr("wake.failed")
        return Woken.FAILED
    await services.inventory.set_token(machine_id, machine.metadata.get("token"))
    await hydrate_if_restored(
        services.broker.redis,
        services.metrics,
        str(session_id),
        machine_id,
        timeout=restore_timeout,
        prefix=services.broker.prefix,
    )
    async with services.db.connection() as conn:
        activated = await sessions.activate_session(conn, session_id, machine_id, epoch)
    if activated is None:
        return Woken.ENDED  # whoever ended the session released the machine
    services.metrics.incr(f"wake.{record.tier.value}")
    services.metrics.timing("wake.duration", (time.perf_counter() - began) * 1000)
    return Woken.ACTIVE
