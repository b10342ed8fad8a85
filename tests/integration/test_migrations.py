"""The migration runner on fresh databases: idempotent, safe from two processes at once, and
strict about applied migrations that were edited afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from sql.errors import MigrationError
from sql.migrate import apply_migrations, load_migrations
from tests.integration.helpers import CLI, REPO_ROOT, create_database, drop_database


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new, empty database, dropped afterwards."""
    name = f"po_mig_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


def _applied(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


def _expected() -> list[tuple[int, str, str]]:
    return [(m.version, m.name, m.checksum) for m in load_migrations()]


async def test_migrations_apply_once_and_a_second_run_applies_nothing(
    fresh_database: str,
) -> None:
    first = await apply_migrations(fresh_database)
    second = await apply_migrations(fresh_database)

    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert len(first) >= 2
    assert second == []
    assert _applied(fresh_database) == _expected()
    with psycopg.connect(fresh_database) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
    assert {"preview_sessions", "machine_leases", "plans", "user_quotas"} <= tables


def test_two_migrate_processes_at_once_apply_each_migration_once(fresh_database: str) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_database}
    processes = [
        subprocess.Popen(
            [str(CLI), "migrate"],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=60)
            outputs.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert [code for code, _, _ in outputs] == [0, 0], outputs
    count = len(load_migrations())
    messages = sorted(out.strip().splitlines()[-1] for _, out, _ in outputs)
    # One process applied everything; the other waited for the lock and found nothing to do.
    assert messages == sorted([f"{count} migration(s) applied", "database is up to date"])
    assert _applied(fresh_database) == _expected()


async def test_an_edited_applied_migration_is_refused(fresh_database: str) -> None:
    await apply_migrations(fresh_database)
    first = load_migrations()[0]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
            ("0" * 64, first.version),
        )

    with pytest.raises(MigrationError, match=f"{first.version:04d}_{first.name} changed"):
        await apply_migrations(fresh_database)
    # Refused before touching anything; the lock was released, so the next run is not stuck.
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
            (first.checksum, first.version),
        )
    assert await apply_migrations(fresh_database) == []
