"""The migration runner: numbered plain-SQL files applied once each, in order.

Safe when several instances start at once: the runner holds a session-level advisory lock while
it reads what is applied and applies the rest, so a second instance waits and then finds nothing
left to do. Each migration runs in its own transaction together with the row that records it, so
a failed migration leaves no trace and is retried on the next start.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from sql.errors import DatabaseUnavailable, MigrationError

# Any constant will do; it only has to be the same for every instance of this service.
MIGRATION_LOCK_KEY = 0x5072_6576_6965_77  # "Preview"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("sql").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number: {versions}")
    return found


async def apply_migrations(dsn: str) -> list[Migration]:
    """Apply what is missing; return the migrations this call applied (empty when up to date)."""
    migrations = load_migrations()
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            return await _apply_locked(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


async def _apply_locked(
    conn: psycopg.AsyncConnection[tuple[object, ...]], migrations: list[Migration]
) -> list[Migration]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    cursor = await conn.execute("SELECT version, checksum FROM schema_migrations")
    applied = {int(str(v)): str(c) for v, c in await cursor.fetchall()}
    done: list[Migration] = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                # An applied migration was edited: refuse rather than drift silently.
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was "
                    "applied; add a new migration instead"
                )
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {exc}"
            ) from exc
        done.append(migration)
    return done
