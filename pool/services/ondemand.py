"""On-demand boots: the pool was empty, the session was answered 202 'booting', and this makes
a machine for it. If the session ended meanwhile, the fresh (unused) machine joins the pool. A
session started from its project's last files becomes active once the new machine applied them
(pool.services.project_files)."""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Mapping

from pool.core.errors import ProviderError
from pool.core.provider import Guest
from pool.services.context import PoolServices
from pool.services.fallbacks import BOOT_FAILED, record_start_failure
from pool.services.lifecycle import end_and_release
from pool.services.machines import destroy_machine
from pool.services.project_files import RESTORE_TIMEOUT_SECONDS, hydrate_if_restored
from pool.services.refill import RefillSettings, create_and_wait
from pool.store.inventory import PoolKey
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)


class Booted(enum.Enum):
    """What an on-demand boot did for its session."""

    ATTACHED = "attached"  # the session got the new machine
    POOLED = "pooled"  # the session ended meanwhile: the fresh machine joined the pool
    RELEASED = "released"  # the session ended between the claim and the attach: recycled
    FAILED = "failed"  # no machine: the session failed
    SKIPPED = "skipped"  # the session is not booting (a duplicate delivery, or ended)


async def boot_for_session(
    services: PoolServices,
    session_id: uuid.UUID,
    settings: RefillSettings,
    guests: Mapping[PoolKey, Guest | None] | None = None,
    *,
    restore_timeout: float = RESTORE_TIMEOUT_SECONDS,
) -> Booted:
    inventory, provider = services.inventory, services.provider
    async with services.db.connection() as conn:
        session = await sessions.get_session(conn, session_id)
    if session is None or session.status != SessionStatus.BOOTING:
        return Booted.SKIPPED
    pool = PoolKey(session.template, session.region)

    async def fail_boot() -> Booted:
        if await end_and_release(
            services, session_id, reason=BOOT_FAILED, status=SessionStatus.FAILED
        ):
            await record_start_failure(services, session_id, BOOT_FAILED)
        services.metrics.incr("ondemand.failed")
        return Booted.FAILED

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
            return Booted.POOLED
        # Its record vanished (Redis lost it): without the token hash no agent gets in, so the
        # machine goes, and the session, if it still waits, fails.
        await destroy_machine(inventory, provider, machine.id)
        return await fail_boot()
    # The claim assigned the machine: the gateway hydrates it as its agent hears of it.
    await hydrate_if_restored(
        services.broker.redis,
        services.metrics,
        str(session_id),
        machine.id,
        timeout=restore_timeout,
        prefix=services.broker.prefix,
    )
    async with services.db.connection() as conn:
        attached = await sessions.attach_machine(conn, session_id, machine.id, epoch)
    if attached is None:
        if await services.broker.release(machine.id, epoch):
            await services.enqueue_recycle(machine.id, epoch + 1)
        return Booted.RELEASED
    services.metrics.incr("ondemand.booted")
    return Booted.ATTACHED
