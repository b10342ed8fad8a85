"""Fallbacks to Appetize (migration 0007, `preview_fallbacks`): a project's session on the new
system failed for a user, so that editor is answered `appetize` (reason `fallback`) for a while
(sql.flags.load_backend_context reads the latest one in the window)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from sql.sessions import translated_errors

MAX_REASON_LENGTH = 200


@dataclass(frozen=True)
class Fallback:
    id: int
    at: datetime
    project_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID | None
    reason: str
    detail: dict[str, Any]


async def record_fallback(
    conn: AsyncConnection[Any],
    *,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    reason: str,
    session_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> Fallback:
    """Record that this editor falls back to Appetize, and why (`reason`: a short code such as
    `start_failed` or `repeated_failures`; `detail`: anything worth keeping, as JSON)."""
    if not 1 <= len(reason) <= MAX_REASON_LENGTH:
        raise ValueError(f"a fallback's reason is 1 to {MAX_REASON_LENGTH} characters")
    cursor = conn.cursor(row_factory=class_row(Fallback))
    async with translated_errors():
        await cursor.execute(
            """INSERT INTO preview_fallbacks (project_id, user_id, session_id, reason, detail)
               VALUES (%s, %s, %s, %s, %s)
               RETURNING id, at, project_id, user_id, session_id, reason, detail""",
            (project_id, user_id, session_id, reason, Jsonb(detail or {})),
        )
        row = await cursor.fetchone()
    assert row is not None
    return row


async def recent_fallbacks(
    conn: AsyncConnection[Any], project_id: uuid.UUID, *, limit: int = 20
) -> list[Fallback]:
    """A project's fallbacks, newest first (for operators and tests)."""
    cursor = conn.cursor(row_factory=class_row(Fallback))
    async with translated_errors():
        await cursor.execute(
            """SELECT id, at, project_id, user_id, session_id, reason, detail
               FROM preview_fallbacks WHERE project_id = %s ORDER BY at DESC, id DESC
               LIMIT %s""",
            (project_id, limit),
        )
        return await cursor.fetchall()
