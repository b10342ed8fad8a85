"""The Appetize arm's sessions and the stages the panel reports for them (migration 0009):
`appetize_arm_sessions`, `appetize_arm_events`. The A/B report reads them beside the new
system's `session_events`.

A stage other than `error` and `edit_visible` happens once: the first report wins (a reloaded
embed, a retried request). Reports are taken only for the owner's live session, with a time
within its life: the panel's clock is trusted for the order of its own stages, not for
rewriting history, so `at` is refused outside [created_at - skew, now + skew].
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from sql.sessions import translated_errors

Connection = AsyncConnection[Any]

STAGES = ("requested", "embed_loaded", "first_frame", "edit_visible", "error", "ended")
# The panel's clock and the database's may disagree by this much.
CLOCK_SKEW = timedelta(seconds=60)
# The most stages one session keeps (edits and errors repeat): a runaway or hostile panel
# cannot grow the table without bound.
MAX_EVENTS_PER_SESSION = 1000


@dataclass(frozen=True)
class ArmSession:
    id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    reason: str
    created_at: datetime
    ended_at: datetime | None


class Reported(enum.Enum):
    """What became of one stage report."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # that stage was already reported: the first report stands
    NOT_FOUND = "not_found"  # no such session of this user
    ENDED = "ended"  # the session already ended: nothing more is taken
    OUT_OF_RANGE = "out_of_range"  # `at` is outside the session's life
    FULL = "full"  # the session has MAX_EVENTS_PER_SESSION stages already


async def create_arm_session(
    conn: Connection, *, project_id: uuid.UUID, user_id: uuid.UUID, reason: str
) -> ArmSession:
    """A new Appetize-arm session and its `requested` stage (now: the request is the panel's
    ask for the embed), in one transaction."""
    cursor = conn.cursor(row_factory=class_row(ArmSession))
    async with translated_errors(), conn.transaction():
        await cursor.execute(
            """INSERT INTO appetize_arm_sessions (id, project_id, user_id, reason)
               VALUES (%s, %s, %s, %s)
               RETURNING id, project_id, user_id, reason, created_at, ended_at""",
            (uuid.uuid4(), project_id, user_id, reason),
        )
        row = await cursor.fetchone()
        assert row is not None
        await conn.execute(
            """INSERT INTO appetize_arm_events (session_id, stage, at)
               VALUES (%s, 'requested', %s)""",
            (row.id, row.created_at),
        )
    return row


async def record_arm_event(
    conn: Connection,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    stage: str,
    at: datetime | None,
    detail: dict[str, Any],
) -> Reported:
    """Record one stage the panel reported for the user's session. The session's row is locked
    for the transaction, so a report racing the `ended` one is either before it or refused."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    async with translated_errors(), conn.transaction():
        cursor = await conn.execute(
            """SELECT s.created_at, s.ended_at, now(),
                      (SELECT count(*) FROM appetize_arm_events e WHERE e.session_id = s.id)
               FROM appetize_arm_sessions s
               WHERE s.id = %s AND s.user_id = %s FOR UPDATE""",
            (session_id, user_id),
        )
        found = await cursor.fetchone()
        if found is None:
            return Reported.NOT_FOUND
        created_at, ended_at, now, count = found
        if ended_at is not None:
            return Reported.ENDED
        if count >= MAX_EVENTS_PER_SESSION and stage != "ended":
            return Reported.FULL
        when = now if at is None else at
        if not created_at - CLOCK_SKEW <= when <= now + CLOCK_SKEW:
            return Reported.OUT_OF_RANGE
        inserted = await conn.execute(
            """INSERT INTO appetize_arm_events (session_id, stage, at, detail)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (session_id, stage)
                   WHERE stage IN ('requested', 'embed_loaded', 'first_frame', 'ended')
               DO NOTHING""",
            (session_id, stage, when, Jsonb(detail)),
        )
        if inserted.rowcount == 0:
            return Reported.DUPLICATE
        if stage == "ended":
            await conn.execute(
                "UPDATE appetize_arm_sessions SET ended_at = %s WHERE id = %s",
                (max(when, created_at), session_id),
            )
    return Reported.RECORDED
