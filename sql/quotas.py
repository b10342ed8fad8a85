"""Project access and plan limits: what a user may lease, read in one round trip."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from sql.preview_configs import PreviewConfig
from sql.sessions import translated_errors
from sql.states import SessionStatus


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
    # The project's saved preview configuration (None without one, or without access).
    preview: PreviewConfig | None = None
    # The user's failed sessions of the project within the fallback window, counting back to
    # the last that did not fail (app.rollout.fallback sends the editor to Appetize past a
    # threshold). Ends that say nothing of the system (`abandoned`) do not count.
    failures_in_a_row: int = 0


# Ends that say nothing about the system: the client left before it heard of its session.
NOT_SYSTEM_FAILURES = ("abandoned",)


async def load_lease_context(
    conn: AsyncConnection[Any],
    user_id: uuid.UUID,
    project_id: uuid.UUID,
    failure_window_seconds: float = 1800.0,
) -> LeaseContext:
    """Whether the user owns or is a member of the project, the user's effective limits (the
    plan's, overridden by non-null columns of user_quotas; 'free' without a row), the
    project's preview configuration and its recent failures in a row: one round trip, the
    lease path's only query before the lease."""
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
                   pl.idle_timeout_seconds,
                   c.project_id IS NOT NULL, c.template, c.device, c.device_type, c.options,
                   (SELECT count(*) FROM preview_sessions s
                    WHERE s.project_id = %(project)s AND s.user_id = %(user)s
                      AND s.status = %(failed)s AND s.end_reason <> ALL(%(ignored)s)
                      AND s.created_at > now() - make_interval(secs => %(window)s)
                      AND s.created_at > coalesce(
                          (SELECT max(o.created_at) FROM preview_sessions o
                           WHERE o.project_id = %(project)s AND o.user_id = %(user)s
                             AND o.status <> %(failed)s),
                          '-infinity'))
               FROM plans pl
               LEFT JOIN user_quotas q ON q.user_id = %(user)s
               LEFT JOIN project_preview_configs c ON c.project_id = %(project)s
               WHERE pl.name = coalesce(q.plan, 'free')""",
            {
                "project": project_id,
                "user": user_id,
                "failed": SessionStatus.FAILED.value,
                "ignored": list(NOT_SYSTEM_FAILURES),
                "window": failure_window_seconds,
            },
        )
        row = await cursor.fetchone()
    if row is None:
        raise LookupError("the 'free' plan is missing: migrations not applied?")
    access = bool(row[0])
    preview = PreviewConfig(*row[8:12]) if access and row[7] else None
    return LeaseContext(access, PlanLimits(*row[1:7]), preview, int(row[12]))
