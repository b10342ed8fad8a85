"""The lease path: quota checks, the atomic take from the warm pool, the Postgres commit.

    1. one query: may the user use the project, what are the user's limits, and the
       project's preview configuration (what the request leaves out comes from it)
    2. one Lua call: concurrent-session gate, GCRA creation rate, take a ready machine
       (pending, fenced by epoch), hot first, then suspended, then stopped — or reserve an
       on-demand boot slot
    3. one statement: the session, its ledger row and its first event, taking one of the
       user's live-session slots (Redis may have been flushed)
    4. promote the pending lease
    5. only for a suspended or stopped machine: queue its wake and answer 202 `booting`; the
       session becomes active once the machine is up (pool.services.wake)

With `restore`, the project's last files (pool.services.project_files) are read once the
lease is taken and become the session's edit log between the commit and the promotion, so its
machine is never assigned without them; a hot machine is then sent them and the answer waits
until it applied them (or PREVIEW_RESTORE_TIMEOUT_SECONDS), and a booting session becomes
active only after its machine applied them (the wake and the on-demand boot wait the same way).

Failure between 2 and 4 never leaks a machine: a failed commit hands the machine straight back
(nobody saw it), and a crash leaves a pending lease the reaper reclaims after its TTL.

A session is recorded only for a client that is still there to hear of it. The client is
checked (`client_gone`, the route's `request.is_disconnected`) before the take and again with
the connection for the commit in hand, which is where a request waits during a Postgres outage
and where its client gives up: a gone client's machine goes straight back, nothing is written.
After the commit, anything that stops the answer (the client gone by then, promote or a queued
job failing on a store) ends the session `failed` with reason `abandoned` and releases its
machine for recycling. What is left is HTTP's own window: a client that leaves while the answer
is being written cannot be told from one that read it; that session ends at its idle timeout.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from psycopg_pool import AsyncConnectionPool

from app.auth import Principal
from app.devices import Device, UnknownDevice, resolve_device
from app.errors import ApiError, bad_request, client_closed, forbidden, too_many, unavailable
from app.pool_admin import PoolAdminError, check_configured
from app.resources import Resources
from app.rollout.fallback import (
    POOL_EXHAUSTED,
    REPEATED_FAILURES,
    fall_back,
    should_fall_back,
    unavailable_with_fallback,
)
from app.schemas import CreateSessionBody
from pool.core import logs
from pool.core.errors import PoolError
from pool.edits.edit_log import OverBudget
from pool.edits.restored_log import Seeded, start_log_from
from pool.services.lifecycle import release_session_machine
from pool.services.project_files import (
    FileKeeper,
    Restorable,
    files_to_restore,
    hydrate_before_ready,
)
from pool.store.leasing import (
    BootReserved,
    LeaseBroker,
    Leased,
    LeaseRequest,
    PoolEmpty,
    QuotaExceeded,
    RateLimited,
)
from pool.store.queue import JobQueue
from sql import sessions
from sql.errors import DataError, LedgerConflict
from sql.preview_configs import PreviewConfig
from sql.quotas import PlanLimits, load_lease_context
from sql.sessions import ConcurrentLimitReached, NewSession, SessionRow
from sql.stages import LeaseKind
from sql.states import SessionStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


ClientGone = Callable[[], Awaitable[bool]]


class _Abandoned(Exception):
    """The client left before the commit."""


@dataclass(frozen=True)
class Restored:
    """The project's last files the session started from."""

    files: Restorable
    seq: int
    hydrated: bool = False


@dataclass(frozen=True)
class Created:
    session: SessionRow
    booting: bool
    restored: Restored | None = None


async def _still_here() -> bool:
    return False


async def create_session(
    res: Resources,
    principal: Principal,
    body: CreateSessionBody,
    client_gone: ClientGone = _still_here,
) -> Created:
    started = time.perf_counter()
    _requested(res, body)  # what the request names is checked before any I/O
    async with res.db.connection() as conn:
        context = await load_lease_context(
            conn,
            principal.user_id,
            body.project_id,
            failure_window_seconds=res.settings.preview_fallback_window_seconds,
        )
    failures = context.failures_in_a_row
    if not context.can_access_project:
        raise forbidden("you do not have access to this project")
    if should_fall_back(failures, res.settings.preview_fallback_failures):
        fallback = await fall_back(
            res.db,
            project_id=body.project_id,
            user_id=principal.user_id,
            reason=REPEATED_FAILURES,
            detail={"failures": failures},
        )
        raise unavailable_with_fallback(
            REPEATED_FAILURES, f"{failures} sessions of this project failed in a row", fallback
        )
    body = with_saved_config(body, context.preview)
    template, region, device = _requested(res, body)
    limits = context.limits
    session_id = uuid.uuid4()
    logs.session_id.set(str(session_id))
    if await client_gone():
        raise client_closed()
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
        requested_at=started,
    )
    match outcome:
        case Leased() if outcome.needs_wake:
            row, restored = await _commit_lease(
                res, new, limits, outcome, client_gone, body.restore
            )
            created = Created(row, booting=True, restored=restored)
            res.metrics.lease(template, region, f"hit_{outcome.tier.value}")
            await _or_abandon(
                res, new, res.jobs.wake_machine(new.id, outcome.machine_id, outcome.epoch)
            )
            await _nudge_resize(res, template, region)
        case Leased():
            row, restored = await _commit_lease(
                res, new, limits, outcome, client_gone, body.restore
            )
            if restored is not None:
                restored = await _or_abandon(
                    res, new, _hydrate(res, new, outcome.machine_id, restored)
                )
            created = Created(row, booting=False, restored=restored)
            res.metrics.lease(template, region, "hit")
        case BootReserved():
            row, restored = await _commit_boot(res, new, limits, client_gone, body.restore)
            created = Created(row, booting=True, restored=restored)
            res.metrics.lease(template, region, "miss")
        case PoolEmpty():
            res.metrics.lease(template, region, "exhausted")
            await _nudge_resize(res, template, region)
            fallback = await fall_back(
                res.db,
                project_id=body.project_id,
                user_id=principal.user_id,
                reason=POOL_EXHAUSTED,
                detail={"template": template, "region": region},
            )
            raise unavailable_with_fallback(
                POOL_EXHAUSTED, "no preview machine is free; showing Appetize instead", fallback
            )
        case QuotaExceeded():
            res.metrics.lease(template, region, "quota_exceeded")
            raise _quota_exceeded(limits, outcome.retry_after_ms)
        case RateLimited():
            res.metrics.lease(template, region, "rate_limited")
            raise too_many(
                "rate_limited",
                f"your plan allows {limits.creations_per_minute} new sessions per minute",
                outcome.retry_after_ms,
            )
    if await client_gone():
        await _abandon(res, new)
        raise client_closed()
    res.metrics.leased_in(template, region, time.perf_counter() - started)
    return created


def _quota_exceeded(limits: PlanLimits, retry_after_ms: int) -> ApiError:
    return too_many(
        "quota_exceeded",
        f"your plan allows {limits.max_concurrent_sessions} concurrent sessions",
        retry_after_ms,
    )


async def _kept_files(res: Resources, new: NewSession) -> Restorable | None:
    """The project's last files to start from, or None (none kept for this template, expired
    or unusable)."""
    return await files_to_restore(
        res.keeper.store,
        res.metrics,
        new.project_id,
        new.template,
        max_age_seconds=res.settings.snapshot_retention_seconds,
        limits=res.edits.limits,
    )


async def _start_from(res: Resources, new: NewSession, kept: Restorable | None) -> Restored | None:
    """Make `kept` the new session's edit log (before its machine is assigned). A log they
    cannot start (the user's budget is spent) leaves the session on its template's files."""
    if kept is None:
        return None
    seeded = await start_log_from(
        res.redis,
        str(new.id),
        kept.values,
        user=str(new.user_id),
        limits=res.edits.limits,
        prefix=res.edits.prefix,
    )
    if not isinstance(seeded, Seeded):
        outcome = "restore_over_budget" if isinstance(seeded, OverBudget) else "restore_refused"
        log.warning("session %s: the project's files were not restored: %s", new.id, seeded)
        res.metrics.project_files(outcome)
        return None
    res.metrics.project_files("restored")
    return Restored(kept, seeded.seq)


async def _hydrate(
    res: Resources, new: NewSession, machine_id: str, restored: Restored
) -> Restored:
    """A hot machine: send it the restored files and answer once it applied them."""
    hydrated = await hydrate_before_ready(
        res.edits,
        res.metrics,
        str(new.id),
        machine_id,
        restored.seq,
        timeout=res.settings.preview_restore_timeout_seconds,
    )
    return Restored(restored.files, restored.seq, hydrated)


def with_saved_config(body: CreateSessionBody, saved: PreviewConfig | None) -> CreateSessionBody:
    """The request with what it left out taken from the project's preview configuration. The
    device and its platform go together: a request naming either keeps its own choice whole."""
    if saved is None:
        return body
    update: dict[str, object] = {}
    if body.template is None and saved.template is not None:
        update["template"] = saved.template
    if body.device is None and body.device_type is None:
        update["device"], update["device_type"] = saved.device, saved.device_type
    if "options" not in body.model_fields_set:
        update["options"] = saved.options
    return body.model_copy(update=update)


def _requested(res: Resources, body: CreateSessionBody) -> tuple[str, str, Device]:
    """The template, region and device asked for, each one we know (else 400)."""
    template = body.template or res.settings.preview_default_template
    region = body.region or res.settings.preview_default_region
    try:
        check_configured(res.settings, template, region)
    except PoolAdminError as exc:
        raise bad_request(exc.message, exc.code) from None
    try:
        return template, region, resolve_device(body.device, body.device_type)
    except UnknownDevice as exc:
        raise bad_request(str(exc), "unknown_device") from None


async def _commit_lease(
    res: Resources,
    new: NewSession,
    limits: PlanLimits,
    leased: Leased,
    client_gone: ClientGone,
    restore: bool,
) -> tuple[SessionRow, Restored | None]:
    logs.machine_id.set(leased.machine_id)
    try:
        # Read with the lease in hand (a refused lease costs no read of up to 8 MiB); a store
        # failure here gives the machine back like one of the commit.
        kept = await _kept_files(res, new) if restore else None
        async with res.db.connection() as conn:
            if await client_gone():
                raise _Abandoned
            row = await sessions.record_session(
                conn,
                new,
                max_concurrent=limits.max_concurrent_sessions,
                machine_id=leased.machine_id,
                epoch=leased.epoch,
                wake=leased.needs_wake,
                lease_kind=LeaseKind(leased.tier.value),
            )
    except ConcurrentLimitReached:
        await res.broker.release(leased.machine_id, leased.epoch, return_to_ready=True)
        raise _quota_exceeded(limits, 30_000) from None
    except LedgerConflict:
        # The reaper fenced this lease: the commit came after the pending TTL. The machine is
        # no longer ours; only the user's session slot needs dropping.
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise unavailable("lease_expired", "the lease expired before it was recorded") from None
    except (DataError, OSError):
        await res.broker.release(leased.machine_id, leased.epoch, return_to_ready=True)
        raise
    except _Abandoned:
        await res.broker.release(leased.machine_id, leased.epoch, return_to_ready=True)
        raise client_closed() from None
    restored = await _or_abandon(res, new, _start_from(res, new, kept))
    if not await _or_abandon(res, new, res.broker.promote(leased.machine_id, leased.epoch, new.id)):
        async with res.db.connection() as conn:
            await sessions.end_session(
                conn, new.id, reason="lease_lost", status=SessionStatus.FAILED
            )
        raise unavailable("lease_expired", "the lease expired before it was recorded")
    return row, restored


async def _commit_boot(
    res: Resources,
    new: NewSession,
    limits: PlanLimits,
    client_gone: ClientGone,
    restore: bool,
) -> tuple[SessionRow, Restored | None]:
    try:
        kept = await _kept_files(res, new) if restore else None
        async with res.db.connection() as conn:
            if await client_gone():
                raise _Abandoned
            row = await sessions.record_session(
                conn,
                new,
                max_concurrent=limits.max_concurrent_sessions,
                machine_id=None,
                epoch=None,
            )
    except ConcurrentLimitReached:
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise _quota_exceeded(limits, 30_000) from None
    except (DataError, OSError):
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise
    except _Abandoned:
        await res.broker.forget_session(new.template, new.region, new.id, new.user_id)
        raise client_closed() from None
    restored = await _or_abandon(res, new, _start_from(res, new, kept))
    await _or_abandon(res, new, res.jobs.boot_session(new.id))
    await _nudge_resize(res, new.template, new.region)
    return row, restored


async def _or_abandon(res: Resources, new: NewSession, step: Awaitable[T]) -> T:
    """A step between the commit and the answer: if it fails, the client hears an error, so the
    session it would never know of is ended."""
    try:
        return await step
    except Exception:
        await _abandon(res, new)
        raise


async def _abandon(res: Resources, new: NewSession) -> None:
    """End a committed session that its client will not hear of (`failed`, `abandoned`) and
    release its machine for recycling. Best effort: if a store fails here too, the session ends
    at its idle timeout (nobody heartbeats it), and a machine whose release did not reach Redis
    is recycled by the reaper once its pending lease expires (its ledger row is released)."""
    try:
        async with res.db.connection() as conn:
            ended = await sessions.end_session(
                conn, new.id, reason="abandoned", status=SessionStatus.FAILED
            )
        if ended is not None:
            await release_session_machine(res.broker, ended, res.jobs.recycle, keeper=res.keeper)
            log.warning("ended session %s: its client will not hear of it", new.id)
    except (DataError, PoolError, OSError) as exc:
        log.error("could not end abandoned session %s: %s", new.id, exc)


async def end_session(res: Resources, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """End the user's live session; False when there is none (already ended, or not theirs)."""
    return await end_live_session(
        res.db, res.broker, res.jobs, session_id, keeper=res.keeper, user_id=user_id
    )


async def end_live_session(
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    jobs: JobQueue,
    session_id: uuid.UUID,
    *,
    keeper: FileKeeper,
    user_id: uuid.UUID | None = None,
    reason: str = "deleted",
) -> bool:
    """End a live session (with `user_id`, only that user's), release what it held and keep its
    files for its project: the API's DELETE and the CLI's `sessions end`. False when there is
    none (already ended)."""
    async with db.connection() as conn:
        ended = await sessions.end_session(conn, session_id, reason=reason, user_id=user_id)
    if ended is None:
        return False
    await release_session_machine(broker, ended, jobs.recycle, keeper=keeper)
    return True


async def _nudge_resize(res: Resources, template: str, region: str) -> None:
    try:
        await res.jobs.resize(template, region)
    except Exception as exc:  # the cron refills anyway; a nudge is best effort
        log.warning("could not nudge resize: %s", exc)
