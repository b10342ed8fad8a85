"""The lease path: quota checks, the atomic take from the warm pool, the Postgres commit.

    1. one query: may the user use the project, and what are the user's limits
    2. one Lua call: concurrent-session gate, GCRA creation rate, take a ready machine
       (pending, fenced by epoch), hot first, then suspended, then stopped — or reserve an
       on-demand boot slot
    3. one statement: the session, its ledger row and its first event, taking one of the
       user's live-session slots (Redis may have been flushed)
    4. promote the pending lease
    5. only for a suspended or stopped machine: queue its wake and answer 202 `booting`; the
       session becomes active once the machine is up (pool.wake)

Failure between 2 and 4 never leaks a machine: a failed commit hands the machine straight back
(nobody saw it), and a crash leaves a pending lease the reaper reclaims after its TTL.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from app.auth import Principal
from app.devices import UnknownDevice, resolve_device
from app.errors import bad_request, forbidden, too_many, unavailable
from app.resources import Resources
from app.schemas import CreateSessionBody
from pool import logs
from pool.leasing import (
    BootReserved,
    Leased,
    LeaseRequest,
    PoolEmpty,
    QuotaExceeded,
    RateLimited,
)
from pool.lifecycle import release_session_machine
from sql import sessions
from sql.errors import DataError, LeaseConflict
from sql.quotas import PlanLimits, load_lease_context
from sql.sessions import ConcurrentLimitReached, NewSession, SessionRow
from sql.states import SessionStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Created:
    session: SessionRow
    booting: bool


async def create_session(res: Resources, principal: Principal, body: CreateSessionBody) -> Created:
    started = time.perf_counter()
    template = body.template or res.settings.preview_default_template
    region = body.region or res.settings.preview_default_region
    if template not in res.settings.templates:
        raise bad_request(f"unknown template {template!r}", "unknown_template")
    if region not in res.settings.regions:
        raise bad_request(
            f"unknown region {region!r} (known: {', '.join(res.settings.regions)})",
            "unknown_region",
        )
    try:
        device = resolve_device(body.device, body.device_type)
    except UnknownDevice as exc:
        raise bad_request(str(exc), "unknown_device") from None
    async with res.db.connection() as conn:
        context = await load_lease_context(conn, principal.user_id, body.project_id)
    if not context.can_access_project:
        raise forbidden("you do not have access to this project")
    limits = context.limits
    session_id = uuid.uuid4()
    logs.session_id.set(str(session_id))
    outcome = await res.broker.lease(
        LeaseRequest(
            template=template,
            region=region,
            user_id=principal.user_id,
            session_id=session_id,
            max_concurrent=limits.max_concurrent_sessions,
            creations_per_minute=limits.creations_per_minute,
            creation_burst=limits.creation_burst,
        )
    )
    new = NewSession(
        id=session_id,
        project_id=body.project_id,
        user_id=principal.user_id,
        template=template,
        region=region,
        device_type=device.platform,
        device=device.id,
        config=body.options,
        max_session_seconds=limits.max_session_seconds,
        idle_timeout_seconds=limits.idle_timeout_seconds,
    )
    match outcome:
        case Leased() if outcome.needs_wake:
            created = Created(await _commit_lease(res, new, limits, outcome), booting=True)
            res.metrics.incr(f"lease.hit.{outcome.tier.value}")
            await res.jobs.wake_machine(new.id, outcome.machine_id, outcome.epoch)
            await _nudge_resize(res, template, region)
        case Leased():
            created = Created(await _commit_lease(res, new, limits, outcome), booting=False)
            res.metrics.incr("lease.hit")
        case BootReserved():
            created = Created(await _commit_boot(res, new, limits), booting=True)
            res.metrics.incr("lease.miss")
        case PoolEmpty():
            res.metrics.incr("lease.exhausted")
            await _nudge_resize(res, template, region)
            raise unavailable("pool_exhausted", "no preview machine is free; try again shortly")
        case QuotaExceeded():
            res.metrics.incr("lease.quota_exceeded")
            raise too_many(
                "quota_exceeded",
                f"your plan allows {limits.max_concurrent_sessions} concurrent sessions",
                outcome.retry_after_ms,
            )
        case RateLimited():
            res.metrics.incr("lease.rate_limited")
            raise too_many(
                "rate_limited",
                f"your plan allows {limits.creations_per_minute} new sessions per minute",
                outcome.retry_after_ms,
            )
    res.metrics.timing("lease.duration", (time.perf_counter() - started) * 1000)
    return created


async def _commit_lease(
    res: Resources, new: NewSession, limits: PlanLimits, leased: Leased
) -> SessionRow:
    logs.machine_id.set(leased.machine_id)
    try:
        async with res.db.connection() as conn:
            row = await sessions.record_session(
                conn,
                new,
                max_concurrent=limits.max_concurrent_sessions,
                machine_id=leased.machine_id,
                epoch=leased.epoch,
                wake=leased.needs_wake,
            )
    except ConcurrentLimitReached:
        await res.broker.release(leased.machine_id, leased.epoch, return_to_ready=True)
        raise too_many(
            "quota_exceeded",
            f"your plan allows {limits.max_concurrent_sessions} concurrent sessions",
            30_000,
        ) from None
    except LeaseConflict:
        # The reaper fenced this lease: the commit came after the pending TTL. The machine is
        # no longer ours; only the user's session slot needs dropping.
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise unavailable("lease_expired", "the lease expired before it was recorded") from None
    except (DataError, OSError):
        await res.broker.release(leased.machine_id, leased.epoch, return_to_ready=True)
        raise
    if not await res.broker.promote(leased.machine_id, leased.epoch, new.id):
        async with res.db.connection() as conn:
            await sessions.end_session(
                conn, new.id, reason="lease_lost", status=SessionStatus.FAILED
            )
        raise unavailable("lease_expired", "the lease expired before it was recorded")
    return row


async def _commit_boot(res: Resources, new: NewSession, limits: PlanLimits) -> SessionRow:
    try:
        async with res.db.connection() as conn:
            row = await sessions.record_session(
                conn,
                new,
                max_concurrent=limits.max_concurrent_sessions,
                machine_id=None,
                epoch=None,
            )
    except ConcurrentLimitReached:
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise too_many(
            "quota_exceeded",
            f"your plan allows {limits.max_concurrent_sessions} concurrent sessions",
            30_000,
        ) from None
    except (DataError, OSError):
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise
    await res.jobs.boot_session(new.id)
    await _nudge_resize(res, new.template, new.region)
    return row


async def end_session(res: Resources, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """End the user's live session; False when there is none (already ended, or not theirs)."""
    async with res.db.connection() as conn:
        ended = await sessions.end_session(conn, session_id, reason="deleted", user_id=user_id)
    if ended is None:
        return False
    await release_session_machine(res.broker, ended, res.jobs.recycle)
    return True


async def _nudge_resize(res: Resources, template: str, region: str) -> None:
    try:
        await res.jobs.resize(template, region)
    except Exception as exc:  # the cron refills anyway; a nudge is best effort
        log.warning("could not nudge resize: %s", exc)
