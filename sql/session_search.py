"""Sessions as an operator looks for them: any user's, by user, project or status, newest
first, and one session's events in the order they happened (`sessions list|show`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from sql.sessions import _SESSION_COLUMNS, Connection, SessionRow, translated_errors
from sql.states import SessionStatus


@dataclass
class SessionEvent:
    at: datetime
    kind: str
    detail: dict[str, Any]


async def find_sessions(
    conn: Connection,
    *,
    user_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    status: SessionStatus | None = None,
    limit: int = 50,
) -> list[SessionRow]:
    """Sessions matching every filter given, newest first."""
    cursor = conn.cursor(row_factory=class_row(SessionRow))
    async with translated_errors():
        await cursor.execute(
            f"""SELECT {_SESSION_COLUMNS} FROM preview_sessions
                WHERE (%(user)s::uuid IS NULL OR user_id = %(user)s)
                  AND (%(project)s::uuid IS NULL OR project_id = %(project)s)
                  AND (%(status)s::text IS NULL OR status = %(status)s)
                ORDER BY created_at DESC, id LIMIT %(limit)s""",
            {
                "user": user_id,
                "project": project_id,
                "status": status.value if status else None,
                "limit": limit,
            },
        )
        return await cursor.fetchall()


async def session_events(conn: Connection, session_id: uuid.UUID) -> list[SessionEvent]:
    """What `session_events` holds for the session (its stages and any other events), oldest
    first."""
    cursor = conn.cursor(row_factory=class_row(SessionEvent))
    async with translated_errors():
        await cursor.execute(
            "SELECT at, kind, detail FROM session_events WHERE session_id = %s ORDER BY at, id",
            (session_id,),
        )
        return await cursor.fetchall()


async def user_id_by_email(conn: Connection, email: str) -> uuid.UUID | None:
    async with translated_errors():
        cursor = await conn.execute(
            "SELECT id FROM auth.users WHERE lower(email) = lower(%s)", (email,)
        )
        row = await cursor.fetchone()
    return row[0] if row else None
