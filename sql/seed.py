"""Users, projects and plans for the dev command, the tests and the benchmark. On Supabase the
auth users and projects come from the app; these helpers are for plain Postgres."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection

from sql.sessions import translated_errors


async def ensure_user(conn: AsyncConnection[Any], user_id: uuid.UUID, email: str) -> None:
    async with translated_errors():
        await conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (user_id, email),
        )


async def ensure_project(
    conn: AsyncConnection[Any], project_id: uuid.UUID, owner_id: uuid.UUID, name: str
) -> None:
    async with translated_errors():
        await conn.execute(
            "INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (project_id, owner_id, name),
        )


async def add_member(
    conn: AsyncConnection[Any], project_id: uuid.UUID, user_id: uuid.UUID, role: str = "editor"
) -> None:
    async with translated_errors():
        await conn.execute(
            "INSERT INTO project_members (project_id, user_id, role) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (project_id, user_id, role),
        )


async def set_user_quota(
    conn: AsyncConnection[Any],
    user_id: uuid.UUID,
    *,
    plan: str = "free",
    max_concurrent_sessions: int | None = None,
    creations_per_minute: int | None = None,
    creation_burst: int | None = None,
) -> None:
    async with translated_errors():
        await conn.execute(
            """INSERT INTO user_quotas (user_id, plan, max_concurrent_sessions,
                                        creations_per_minute, creation_burst)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (user_id) DO UPDATE SET plan = excluded.plan,
                   max_concurrent_sessions = excluded.max_concurrent_sessions,
                   creations_per_minute = excluded.creations_per_minute,
                   creation_burst = excluded.creation_burst, updated_at = now()""",
            (user_id, plan, max_concurrent_sessions, creations_per_minute, creation_burst),
        )
