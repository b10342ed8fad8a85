"""What `sessions list|show|end` do for operators at a shell: any user's sessions, one
session with its events, and ending one the way `DELETE /api/preview/sessions/{id}` does
(app.leases.end_live_session).

Bad input (a malformed id, an unknown status or session) raises SessionAdminError with a code
and words, as app.pool_admin's PoolAdminError does; nothing is written then.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from arq.connections import RedisSettings, create_pool
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from app.settings import Settings
from pool.services.metrics import NullMetrics
from pool.services.project_files import FileKeeper, PostgresProjectFiles
from pool.store.leasing import LeaseBroker
from pool.store.queue import JobQueue
from sql.database import open_pool
from sql.session_search import find_sessions, session_events, user_id_by_email
from sql.sessions import SessionRow, get_session
from sql.states import SessionStatus

# Why an operator ends a session (its end reason, in its timeline and its editors' notice).
OPERATOR_END_REASON = "ended_by_operator"
MAX_LIMIT = 1000


class SessionAdminError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise SessionAdminError(
            f"invalid_{what}", f"{text!r} is not a {what} id (a UUID)"
        ) from None


def parse_status(text: str | None) -> SessionStatus | None:
    if text is None:
        return None
    try:
        return SessionStatus(text)
    except ValueError:
        known = ", ".join(s.value for s in SessionStatus)
        raise SessionAdminError(
            "invalid_status", f"unknown status {text!r} (known: {known})"
        ) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise SessionAdminError("invalid_limit", f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    return limit


async def list_sessions(
    settings: Settings,
    *,
    user: str | None = None,
    project: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """`user`: an id or an email; `project`: an id. Newest first."""
    project_id = parse_uuid(project, "project") if project is not None else None
    wanted = parse_status(status)
    check_limit(limit)
    async with _stores(settings) as stores, stores.db.connection() as conn:
        user_id = None
        if user is not None and "@" in user:
            user_id = await user_id_by_email(conn, user)
            if user_id is None:
                raise SessionAdminError("unknown_user", f"no user with the email {user!r}")
        elif user is not None:
            user_id = parse_uuid(user, "user")
        rows = await find_sessions(
            conn, user_id=user_id, project_id=project_id, status=wanted, limit=limit
        )
    return [session_summary(row) for row in rows]


async def show_session(settings: Settings, session: str) -> dict[str, Any]:
    """The session and the events recorded for it, oldest first."""
    session_id = parse_uuid(session, "session")
    async with _stores(settings) as stores, stores.db.connection() as conn:
        row = await _known(conn, session_id)
        events = await session_events(conn, session_id)
    # Times count from the request (its `requested` stage), else from the row's creation.
    start = next((e.at for e in events if e.kind == "requested"), row.created_at)
    return {
        **session_summary(row),
        "machineId": row.machine_id,
        "device": row.device or row.device_type,
        "lastActivity": row.last_activity.isoformat(),
        "expiresAt": row.expires_at.isoformat(),
        "endedAt": row.ended_at.isoformat() if row.ended_at else None,
        "endReason": row.end_reason,
        "events": [
            {
                "at": event.at.isoformat(),
                "sinceRequestedMs": round((event.at - start).total_seconds() * 1000),
                "kind": event.kind,
                "detail": event.detail,
            }
            for event in events
        ],
    }


async def end_session(settings: Settings, session: str) -> dict[str, Any]:
    """End a live session and release its machine. `ended` is False (and nothing changes)
    when it had already ended."""
    from app.leases import end_live_session

    session_id = parse_uuid(session, "session")
    async with _stores(settings) as stores:
        async with stores.db.connection() as conn:
            await _known(conn, session_id)
        # The CLI serves no metrics: a failure to keep the files is in its log only.
        keeper = FileKeeper(PostgresProjectFiles(stores.db), NullMetrics())
        ended = await end_live_session(
            stores.db,
            stores.broker,
            stores.jobs,
            session_id,
            keeper=keeper,
            reason=OPERATOR_END_REASON,
        )
        async with stores.db.connection() as conn:
            row = await _known(conn, session_id)
    return {
        "sessionId": str(session_id),
        "ended": ended,
        "status": row.status.value,
        "endReason": row.end_reason,
    }


def session_summary(row: SessionRow) -> dict[str, Any]:
    return {
        "sessionId": str(row.id),
        "userId": str(row.user_id),
        "projectId": str(row.project_id),
        "template": row.template,
        "region": row.region,
        "status": row.status.value,
        "createdAt": row.created_at.isoformat(),
    }


async def _known(conn: Any, session_id: uuid.UUID) -> SessionRow:
    row = await get_session(conn, session_id)
    if row is None:
        raise SessionAdminError("unknown_session", f"no session {session_id}")
    return row


@dataclass(frozen=True)
class _Stores:
    db: AsyncConnectionPool
    broker: LeaseBroker
    jobs: JobQueue


@contextlib.asynccontextmanager
async def _stores(settings: Settings) -> AsyncIterator[_Stores]:
    """The stores as the web process holds them (app.resources): the broker on a decoding
    client, the job queue on arq's own."""
    assert settings.database_url and settings.redis_url
    async with contextlib.AsyncExitStack() as stack:
        db = await open_pool(settings.database_url, min_size=1, max_size=2)
        stack.push_async_callback(db.close)
        redis: Redis = Redis.from_url(settings.redis_url, decode_responses=True)
        stack.push_async_callback(redis.aclose)
        arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
        stack.push_async_callback(arq.aclose)
        broker = LeaseBroker(
            redis,
            pending_ttl_ms=int(settings.preview_pending_ttl_seconds * 1000),
            ondemand_max=settings.preview_ondemand_max,
        )
        yield _Stores(db, broker, JobQueue(arq))
