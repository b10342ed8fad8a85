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
