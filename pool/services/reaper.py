"""The reaper: leases that never committed, and sessions past their idle timeout, their
maximum duration, or stuck booting. Before a session ends for inactivity its editors are warned
(`idleWarning`, once per idle stretch), so a person who is still there can keep it.

A pending lease whose deadline passed is settled in Postgres first: the reaper inserts a fence
row for (machine, epoch). If the API's commit is already there, the lease is real and the
reaper promotes it (the API died after committing); otherwise the fence makes any late commit
fail, and the machine — which no user ever saw — goes straight back to ready.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from pool.edits.edit_log import announce_idle_warning
from pool.services.context import PoolServices
from pool.services.lifecycle import end_and_release
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReapReport:
    reclaimed: int = 0
    promoted: int = 0
    ended: int = 0
    warned: int = 0


async def reap(
    services: PoolServices, *, booting_grace_seconds: int = 180, idle_warning_seconds: int = 60
) -> ReapReport:
    db, broker = services.db, services.broker
    reclaimed = promoted = 0
    for pending in await broker.expired_pending():
        async with db.connection() as conn:
            fenced = await sessions.fence_lease(
                conn, pending.machine_id, pending.epoch, pending.template, pending.region
            )
            released = not fenced and await sessions.lease_released(
                conn, pending.machine_id, pending.epoch
            )
        if fenced:
            if await broker.release(pending.machine_id, pending.epoch, return_to_ready=True):
                reclaimed += 1
                log.info("reclaimed uncommitted lease of %s", pending.machine_id)
        elif released:
            # Committed, then ended before it was promoted: the API abandoned it (its client
            # was gone) and could not reach Redis to release it. Recycle, never promote.
            if await broker.release(pending.machine_id, pending.epoch):
                await services.enqueue_recycle(pending.machine_id, pending.epoch + 1)
                reclaimed += 1
        elif await broker.promote(pending.machine_id, pending.epoch, uuid.UUID(pending.session_id)):
            promoted += 1

    ended = 0
    async with db.connection() as conn:
        due = await sessions.find_sessions_to_reap(
            conn, booting_grace_seconds=booting_grace_seconds
        )
        warn = await sessions.sessions_to_warn(conn, warn_seconds=idle_warning_seconds)
    for session_id, seconds_left in warn:
        await announce_idle_warning(
            broker.redis, str(session_id), seconds_left, prefix=broker.prefix
        )
    for session_id, reason in due:
        status = SessionStatus.FAILED if reason == "boot_timeout" else SessionStatus.ENDED
        if await end_and_release(services, session_id, reason=reason, status=status):
            ended += 1
    services.metrics.incr("reaper.reclaimed", reclaimed)
    services.metrics.incr("reaper.ended", ended)
    services.metrics.incr("reaper.idle_warned", len(warn))
    return ReapReport(reclaimed=reclaimed, promoted=promoted, ended=ended, warned=len(warn))
