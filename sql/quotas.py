"""Project access and plan limits: what a user may lease, read in one round trip."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from sql.sessions import translated_errors


@dataclass(frozen=True)
class PlanLimits:
    plan: str
    max_concurrent_sessions: int
    creations_per_minute: int
    creation_burst: int
    max_session_seconds: int
    idle_timeout_seconds: int


@dataclass(frozen=True)
class LeaseContext:
    can_access_project: bool
    limits: PlanLimits


async def load_lease_context(
    conn: AsyncConnection[Any], user_id: uuid.UUID, project_id: uuid.UUID
) -> LeaseContext:
    """Whether the user owns or is a member of the project, and the user's effective limits
    (the plan's, overridden by non-null columns of user_quotas; 'free' without a row)."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT
                   EXISTS (SELECT 1 FROM projects p WHERE p.id = %(project)s
                           AND (p.owner_id = %(user)s OR EXISTS (
                               SELECT 1 FROM project_members m
                               WHERE m.project_id = p.id AND m.user_id = %(user)s))),
                   pl.name,
                   coalesce(q.max_concurrent_sessions, pl.max_concurrent_sessions),
                   coalesce(q.creations_per_minute, pl.creations_per_minute),
                   coalesce(q.creation_burst, pl.creation_burst),
                   pl.max_session_seconds,
                   pl.idle_timeout_seconds
               FROM plans pl
               LEFT JOIN user_quotas q ON q.user_id = %(user)s
               WHERE pl.name = coalesce(q.plan, 'free')""",
            {"project": project_id, "user": user_id},
        )
        row = await cursor.fetchone()
    if row is None:
        raise LookupError("the 'free' plan is missing: migrations not applied?")
    return LeaseContext(can_access_project=bool(row[0]), limits=PlanLimits(*row[1:]))
