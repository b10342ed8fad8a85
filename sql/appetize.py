"""The Appetize settings the editor keeps per project (`appetize_previews`, migration 0008) and
the statements of their migration into preview configuration (`project_preview_configs`),
with its journal (`appetize_migration_journal`).

Each write is one statement that checks, inside Postgres, the condition the migration decided
on: a configuration is created only where none exists, replaced or removed only while it is
still the one the journal says the migration wrote. A write that finds the row changed under
it does nothing and says so (False), and the project is reported as left alone. Rows are
compared as jsonb, in SQL, so no value makes a round trip through Python on the way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from sql.sessions import translated_errors

Connection = AsyncConnection[Any]

# Taken for the length of a run of `appetize migrate` or `appetize rollback`, on the run's own
# connection: two runs at once would each decide from what the other is changing.
APPETIZE_MIGRATION_LOCK_KEY = 0x4170_7065_7469_7A65  # "Appetize"


@dataclass(frozen=True)
class AppetizeSettings:
    """What the Appetize embed of a project needs (`GET /api/preview/backend` answers it for
    the `appetize` backend)."""

    public_key: str
    platform: str | None
    device: str | None
    os_version: str | None
    scale: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "publicKey": self.public_key,
            "platform": self.platform,
            "device": self.device,
            "osVersion": self.os_version,
            "scale": self.scale,
        }


async def appetize_settings(conn: Connection, project_id: uuid.UUID) -> AppetizeSettings | None:
    """The project's Appetize settings; None when it has none, or no build to show (no key)."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT public_key, platform, device, os_version, scale FROM appetize_previews
               WHERE project_id = %s AND public_key IS NOT NULL""",
            (project_id,),
        )
        row = await cursor.fetchone()
    return None if row is None else AppetizeSettings(*row)


@dataclass(frozen=True)
class Candidate:
    """A project's Appetize settings, with what the migration needs to decide about it."""

    project_id: uuid.UUID
    project_exists: bool
    platform: str | None
    device: str | None
    options: Any
    migrated: bool  # the journal says the migration wrote its configuration (not rolled back)
    source_unchanged: bool  # its Appetize settings are still those the journal recorded
    has_config: bool
    config_unchanged: bool  # its configuration is still the one the journal recorded


async def read_candidates(
    conn: Connection, after: uuid.UUID | None, limit: int, *, lock: bool
) -> list[Candidate]:
    """Up to `limit` projects with Appetize settings, after `after` in project id order.
    `lock`: hold their settings (FOR SHARE) until the transaction ends, so the editor cannot
    change them between this read and the write made from it."""
    query = """SELECT a.project_id, p.id IS NOT NULL, a.platform, a.device, a.options,
                   coalesce(j.state = 'migrated', false),
                   coalesce(j.source = to_jsonb(a), false),
                   c.project_id IS NOT NULL,
                   coalesce(j.new_config = to_jsonb(c), false)
               FROM appetize_previews a
               LEFT JOIN projects p ON p.id = a.project_id
               LEFT JOIN appetize_migration_journal j ON j.project_id = a.project_id
               LEFT JOIN project_preview_configs c ON c.project_id = a.project_id
               WHERE %(after)s::uuid IS NULL OR a.project_id > %(after)s::uuid
               ORDER BY a.project_id
               LIMIT %(limit)s"""
    if lock:
        query += " FOR SHARE OF a"
    async with translated_errors():
        cursor = await conn.execute(query, {"after": after, "limit": limit})
        rows = await cursor.fetchall()
    return [Candidate(*row) for row in rows]


# The journal row of a configuration just written (`written`) from the project's settings.
_RECORD_MIGRATED = """
    INSERT INTO appetize_migration_journal AS j (project_id, state, source, new_config)
    SELECT w.project_id, 'migrated', to_jsonb(a), to_jsonb(w)
    FROM written w JOIN appetize_previews a ON a.project_id = w.project_id
    ON CONFLICT (project_id) DO UPDATE
        SET state = 'migrated', source = EXCLUDED.source, new_config = EXCLUDED.new_config,
            migrated_at = now(), rolled_back_at = NULL
    RETURNING j.project_id"""


async def create_config(
    conn: Connection, project_id: uuid.UUID, device: str | None, device_type: str
) -> bool:
    """Give the project the configuration its Appetize settings convert to (their options as
    its options) and journal it; False, writing nothing, when it already has one."""
    async with translated_errors():
        cursor = await conn.execute(
            """WITH written AS (
                   INSERT INTO project_preview_configs (project_id, device, device_type, options)
                   SELECT a.project_id, %(device)s, %(device_type)s, a.options
                   FROM appetize_previews a WHERE a.project_id = %(project)s
                   ON CONFLICT (project_id) DO NOTHING
                   RETURNING *)"""
            + _RECORD_MIGRATED,
            {"project": project_id, "device": device, "device_type": device_type},
        )
        return await cursor.fetchone() is not None


async def replace_config(
    conn: Connection, project_id: uuid.UUID, device: str | None, device_type: str
) -> bool:
    """Rewrite the configuration the migration wrote from the project's (since changed)
    Appetize settings; False, writing nothing, when it is no longer the one the journal
    recorded (someone changed it since)."""
    async with translated_errors():
        cursor = await conn.execute(
            """WITH written AS (
                   UPDATE project_preview_configs c
                   SET template = NULL, device = %(device)s, device_type = %(device_type)s,
                       options = a.options, updated_at = now()
                   FROM appetize_previews a, appetize_migration_journal j
                   WHERE c.project_id = %(project)s AND a.project_id = c.project_id
                     AND j.project_id = c.project_id AND j.state = 'migrated'
                     AND j.new_config = to_jsonb(c)
                   RETURNING c.*)"""
            + _RECORD_MIGRATED,
            {"project": project_id, "device": device, "device_type": device_type},
        )
        return await cursor.fetchone() is not None


@dataclass(frozen=True)
class Migrated:
    """A project the journal says was migrated, and whether rolling it back is safe."""

    project_id: uuid.UUID
    has_config: bool
    config_unchanged: bool


async def read_migrated(
    conn: Connection, after: uuid.UUID | None, limit: int, project_id: uuid.UUID | None = None
) -> list[Migrated]:
    """Up to `limit` migrated projects after `after` (or only `project_id`), in id order."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT j.project_id, c.project_id IS NOT NULL,
                      coalesce(j.new_config = to_jsonb(c), false)
               FROM appetize_migration_journal j
               LEFT JOIN project_preview_configs c ON c.project_id = j.project_id
               WHERE j.state = 'migrated'
                 AND (%(after)s::uuid IS NULL OR j.project_id > %(after)s::uuid)
                 AND (%(only)s::uuid IS NULL OR j.project_id = %(only)s::uuid)
               ORDER BY j.project_id
               LIMIT %(limit)s""",
            {"after": after, "limit": limit, "only": project_id},
        )
        rows = await cursor.fetchall()
    return [Migrated(*row) for row in rows]


async def journal_state(conn: Connection, project_id: uuid.UUID) -> str | None:
    async with translated_errors():
        cursor = await conn.execute(
            "SELECT state FROM appetize_migration_journal WHERE project_id = %s", (project_id,)
        )
        row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def remove_config(conn: Connection, project_id: uuid.UUID) -> bool:
    """Undo the migration of one project: remove the configuration it wrote and mark the
    journal row rolled back. False, changing nothing, when the configuration is no longer the
    one the migration wrote. (The statement's parts see the rows as they were before it: a
    configuration absent then was removed by someone else, and there is nothing to undo.)"""
    async with translated_errors():
        cursor = await conn.execute(
            """WITH removed AS (
                   DELETE FROM project_preview_configs c USING appetize_migration_journal j
                   WHERE c.project_id = %(project)s AND j.project_id = c.project_id
                     AND j.new_config = to_jsonb(c)
                   RETURNING c.project_id)
               UPDATE appetize_migration_journal
               SET state = 'rolled_back', rolled_back_at = now()
               WHERE project_id = %(project)s AND state = 'migrated'
                 AND (EXISTS (SELECT 1 FROM removed)
                      OR NOT EXISTS (SELECT 1 FROM project_preview_configs
                                     WHERE project_id = %(project)s))
               RETURNING project_id""",
            {"project": project_id},
        )
        return await cursor.fetchone() is not None


async def prepare_session(conn: Connection) -> None:
    """Settings of a migration run's connection."""
    async with translated_errors():
        # Rows are compared as jsonb, where a timestamp is text in the session's time zone:
        # every run compares in the same one, whatever the server's or the client's default.
        await conn.execute("SET TIME ZONE 'UTC'")
        if conn.info.server_version >= 140000:
            # A killed run's server side would otherwise hold its lock (and its open batch)
            # until its current statement ends, which a row lock can make a long time.
            await conn.execute("SET client_connection_check_interval = '1s'")


async def wait_migration_lock(conn: Connection) -> None:
    async with translated_errors():
        await conn.execute("SELECT pg_advisory_lock(%s)", (APPETIZE_MIGRATION_LOCK_KEY,))


async def try_migration_lock(conn: Connection) -> bool:
    """Take the run's lock on this (autocommit) connection, for as long as it stays open."""
    async with translated_errors():
        cursor = await conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (APPETIZE_MIGRATION_LOCK_KEY,)
        )
        row = await cursor.fetchone()
    return bool(row and row[0])
