"""`appetize migrate` / `appetize rollback` on real Postgres: idempotent, reversible, resumable
after a SIGKILL, a dry run that writes nothing, unknown devices reported, hostile input.

Rows are compared as their text (`t::text`): "identical" here means byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient

from app.rollout.appetize_migration import MigrationRefused, Outcome, Report, migrate, rollback
from app.server import create_app
from app.settings import Settings
from sql.appetize import appetize_settings
from tests.conftest import fill_pool, make_user
from tests.integration.helpers import CLI, REPO_ROOT

MIGRATION_TABLES = ("appetize_previews", "project_preview_configs", "appetize_migration_journal")
HOSTILE_KEY = "k'); DROP TABLE projects; --\\x00 $$ %s {}"


@pytest.fixture
def db(settings: Settings) -> Iterator[str]:
    assert settings.database_url is not None
    yield settings.database_url


@pytest.fixture
async def conn(db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    connection = await psycopg.AsyncConnection.connect(db, autocommit=True)
    async with connection:
        yield connection


def add_project(
    db: str,
    *,
    platform: str | None = "ios",
    device: str | None = "iphone15pro",
    public_key: str | None = "pk123",
    os_version: str | None = "17.0",
    scale: str | None = "75",
    options: Any = None,
    own_config: str | None = None,
) -> uuid.UUID:
    """A project with Appetize settings (and, with `own_config`, a preview configuration of its
    own naming that device)."""
    user = make_user(db)
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            """INSERT INTO appetize_previews (project_id, public_key, platform, device,
                   os_version, scale, options, last_build_id, last_built_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 'b1', now() - interval '1 day')""",
            (
                user.project_id,
                public_key,
                platform,
                device,
                os_version,
                scale,
                Jsonb({} if options is None else options),
            ),
        )
        if own_config is not None:
            c.execute(
                """INSERT INTO project_preview_configs (project_id, device, device_type,
                       updated_at) VALUES (%s, %s, 'android', now() - interval '3 days')""",
                (user.project_id, own_config),
            )
    return user.project_id


def rows(db: str, table: str) -> list[str]:
    with psycopg.connect(db) as c:
        return [r[0] for r in c.execute(f"SELECT t::text FROM {table} t ORDER BY 1").fetchall()]


def every_table(db: str) -> dict[str, list[str]]:
    with psycopg.connect(db) as c:
        names = [
            f"{s}.{n}"
            for s, n in c.execute(
                """SELECT table_schema, table_name FROM information_schema.tables
                   WHERE table_schema IN ('public', 'auth') AND table_type = 'BASE TABLE'"""
            ).fetchall()
        ]
    return {name: rows(db, name) for name in names}


def config_of(db: str, project: uuid.UUID) -> tuple[Any, ...] | None:
    with psycopg.connect(db) as c:
        return c.execute(
            """SELECT template, device, device_type, options FROM project_preview_configs
               WHERE project_id = %s""",
            (project,),
        ).fetchone()


def outcomes(report: Report) -> dict[uuid.UUID, Outcome]:
    return {step.project_id: step.outcome for step in report.steps}


async def test_migrate_converts_and_a_second_run_changes_nothing(
    db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    iphone = add_project(db, options={"orientation": "landscape"})
    pixel = add_project(db, platform="android", device="pixel7")
    default = add_project(db, device=None)

    first = await migrate(conn, batch=2)
    after_first = {table: rows(db, table) for table in MIGRATION_TABLES}
    second = await migrate(conn, batch=2)

    assert outcomes(first) == dict.fromkeys((iphone, pixel, default), Outcome.MIGRATE)
    assert config_of(db, iphone) == (None, "iphone-15", "ios", {"orientation": "landscape"})
    assert config_of(db, pixel) == (None, "pixel-8", "android", {})
    assert config_of(db, default) == (None, None, "ios", {})
    assert second.changed == 0
    assert outcomes(second) == dict.fromkeys((iphone, pixel, default), Outcome.UNCHANGED)
    assert {table: rows(db, table) for table in MIGRATION_TABLES} == after_first
    # The Appetize settings stay, for the fallback.
    settings = await appetize_settings(conn, iphone)
    assert settings is not None and settings.as_json() == {
        "publicKey": "pk123",
        "platform": "ios",
        "device": "iphone15pro",
        "osVersion": "17.0",
        "scale": "75",
    }


async def test_rollback_restores_byte_identical_rows(
    db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    migrated = [add_project(db), add_project(db, platform="android", device="galaxys24")]
    own = add_project(db, own_config="galaxy-s24")
    unknown = add_project(db, device="nexus5")
    before = {t: rows(db, t) for t in ("appetize_previews", "project_preview_configs")}

    done = await migrate(conn)
    assert rows(db, "project_preview_configs") != before["project_preview_configs"]
    undone = await rollback(conn)
    again = await rollback(conn)

    assert outcomes(done) == {
        **dict.fromkeys(migrated, Outcome.MIGRATE),
        own: Outcome.LEFT_ALONE,
        unknown: Outcome.UNMAPPED,
    }
    assert outcomes(undone) == dict.fromkeys(migrated, Outcome.ROLL_BACK)
    assert again.steps == []
    assert {t: rows(db, t) for t in before} == before
    with psycopg.connect(db) as c:
        journal = c.execute(
            "SELECT project_id, state, rolled_back_at IS NOT NULL FROM appetize_migration_journal"
        ).fetchall()
    assert sorted(journal) == sorted((p, "rolled_back", True) for p in migrated)
    # Rolled back, it can be migrated again.
    redone = await migrate(conn)
    assert outcomes(redone)[migrated[0]] is Outcome.MIGRATE
    assert config_of(db, migrated[0]) == (None, "iphone-15", "ios", {})


async def test_rollback_leaves_a_configuration_changed_since_alone(
    db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    kept, touched = add_project(db), add_project(db)
    await migrate(conn)
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            "UPDATE project_preview_configs SET device = 'iphone-se' WHERE project_id = %s",
            (touched,),
        )

    one = await rollback(conn, project_id=kept)
    rest = await rollback(conn)

    assert outcomes(one) == {kept: Outcome.ROLL_BACK}
    assert config_of(db, kept) is None
    assert outcomes(rest) == {touched: Outcome.LEFT_ALONE}
    assert config_of(db, touched) == (None, "iphone-se", "ios", {})
    with pytest.raises(MigrationRefused, match="never migrated"):
        await rollback(conn, project_id=uuid.uuid4())


async def test_changed_appetize_settings_update_the_migrated_configuration(
    db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    project = add_project(db)
    await migrate(conn)
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            "UPDATE appetize_previews SET device = 'iphone15promax' WHERE project_id = %s",
            (project,),
        )

    updated = await migrate(conn)
    await rollback(conn)

    assert outcomes(updated) == {project: Outcome.UPDATE}
    # Rollback still knows the configuration as the update left it.
    assert config_of(db, project) is None


async def test_dry_run_changes_nothing_in_any_table(
    db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    projects = [add_project(db), add_project(db, device="pixel4"), add_project(db)]
    await migrate(conn, batch=1)
    with psycopg.connect(db, autocommit=True) as c:  # one left to migrate, one to update
        c.execute("DELETE FROM appetize_migration_journal WHERE project_id = %s", (projects[0],))
        c.execute("DELETE FROM project_preview_configs WHERE project_id = %s", (projects[0],))
        c.execute(
            "UPDATE appetize_previews SET device = 'iphone14pro' WHERE project_id = %s",
            (projects[2],),
        )
    before = every_table(db)

    would = await migrate(conn, dry_run=True, batch=1)
    would_undo = await rollback(conn, dry_run=True)

    assert every_table(db) == before
    assert outcomes(would) == {
        projects[0]: Outcome.MIGRATE,
        projects[1]: Outcome.UNMAPPED,
        projects[2]: Outcome.UPDATE,
    }
    assert outcomes(would_undo) == {projects[2]: Outcome.ROLL_BACK}


async def test_unknown_devices_are_reported_and_not_migrated(
    db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    unknown = add_project(db, device="nexus5")
    mismatched = add_project(db, platform="android", device="iphone15pro")
    no_platform = add_project(db, platform=None)

    report = await migrate(conn)

    reasons = {step.project_id: (step.outcome, step.reason) for step in report.steps}
    assert reasons == {
        unknown: (Outcome.UNMAPPED, "unknown Appetize device 'nexus5'"),
        mismatched: (
            Outcome.UNMAPPED,
            "Appetize device 'iphone15pro' is ios, the project's platform is android",
        ),
        no_platform: (Outcome.UNMAPPED, "unknown Appetize platform (none)"),
    }
    assert rows(db, "project_preview_configs") == []
    assert rows(db, "appetize_migration_journal") == []


async def test_hostile_input(db: str, conn: psycopg.AsyncConnection[Any]) -> None:
    nasty = add_project(db, public_key=HOSTILE_KEY, device="iphone15pro'; DELETE FROM projects; --")
    huge = add_project(db, options={"k" * 64: ["v" * 1000] * 200})
    nulls = add_project(db, public_key=None, device=None, os_version=None, scale=None)
    deep = add_project(db, options={"a": {"b": {"c": [1, 2.5, None, True, "é\u2028"]}}})

    report = await migrate(conn)

    steps = {step.project_id: step for step in report.steps}
    assert steps[nasty].outcome is Outcome.UNMAPPED
    assert steps[nasty].reason == (
        'unknown Appetize device "iphone15pro\'; DELETE FROM projects; --"'
    )
    assert steps[huge].outcome is Outcome.UNMAPPED
    assert "more than the 4096 allowed" in steps[huge].reason
    assert steps[nulls].outcome is Outcome.MIGRATE
    assert config_of(db, nulls) == (None, None, "ios", {})
    assert config_of(db, deep) == (
        None,
        "iphone-15",
        "ios",
        {"a": {"b": {"c": [1, 2.5, None, True, "é\u2028"]}}},
    )
    with psycopg.connect(db) as c:
        assert c.execute("SELECT count(*) FROM projects").fetchone() == (4,)
    settings = await appetize_settings(conn, nasty)
    assert settings is not None and settings.public_key == HOSTILE_KEY
    assert await appetize_settings(conn, nulls) is None  # no build: no Appetize fallback
    # Reversible all the same: the odd rows do not confuse the comparisons.
    await rollback(conn)
    assert rows(db, "project_preview_configs") == []


def _cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "appetize", *args],
        env={**os.environ, "DATABASE_URL": db},
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_killed_run_resumes_and_migrates_every_project_exactly_once(db: str) -> None:
    projects = sorted(add_project(db) for _ in range(7))
    blocker = psycopg.connect(db)  # holds the 4th project's settings: the run stops there
    try:
        blocker.execute(
            "SELECT 1 FROM appetize_previews WHERE project_id = %s FOR UPDATE", (projects[3],)
        )
        run = subprocess.Popen(
            [str(CLI), "appetize", "migrate", "--batch", "1"],
            env={**os.environ, "DATABASE_URL": db},
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for_journal(db, 3)
            time.sleep(0.3)  # it stays blocked: nothing past the 4th is written
            assert _journal(db).keys() == set(projects[:3])
            run.send_signal(signal.SIGKILL)
            killed_out, _ = run.communicate(timeout=10)
        finally:
            if run.poll() is None:
                run.kill()
            run.communicate()
        before_resume = _journal(db)
    finally:
        blocker.rollback()
        blocker.close()

    resumed = _cli(db, "migrate", "--batch", "2")

    assert run.returncode == -signal.SIGKILL
    # What it printed before the kill is what it had committed.
    assert killed_out.decode().splitlines() == [
        f"migrated {p}: ios iphone-15" for p in projects[:3]
    ]
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == (
        "7 project(s) read, 4 migrated, 3 unchanged, 0 could not be mapped, 0 left alone"
    )
    after = _journal(db)
    assert after.keys() == set(projects)
    # The three committed before the kill were not migrated again.
    assert {p: after[p] for p in projects[:3]} == before_resume
    assert all(config_of(db, p) == (None, "iphone-15", "ios", {}) for p in projects)


def _journal(db: str) -> dict[uuid.UUID, str]:
    with psycopg.connect(db) as c:
        found = c.execute(
            "SELECT project_id, migrated_at::text FROM appetize_migration_journal"
        ).fetchall()
    return {project: at for project, at in found}


def _wait_for_journal(db: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_journal(db)) < count:
        assert time.monotonic() < deadline, f"the run did not migrate {count} projects"
        time.sleep(0.05)


def test_cli_dry_run_prints_the_plan_and_refuses_bad_input(db: str) -> None:
    mapped = add_project(db)
    unknown = add_project(db, device="nexus5")

    dry = _cli(db, "migrate", "--dry-run")
    bad_batch = _cli(db, "migrate", "--batch", "0")
    bad_project = _cli(db, "rollback", "--project", "'; DROP TABLE projects; --")
    not_migrated = _cli(db, "rollback", "--project", str(mapped))

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would migrate {mapped}: ios iphone-15",
        "dry run, nothing written: 2 project(s) read, 1 migrated, 0 unchanged, "
        "1 could not be mapped, 0 left alone",
        "could not map:",
        f"  {unknown}: unknown Appetize device 'nexus5'",
    ]
    assert (bad_batch.returncode, bad_batch.stderr.strip()) == (
        2,
        "preview-orchestrator: refused (bad_batch): --batch must be from 1 to 1000",
    )
    assert bad_project.returncode == 2 and "refused (invalid_id)" in bad_project.stderr
    assert not_migrated.returncode == 2 and "refused (not_migrated)" in not_migrated.stderr
    assert rows(db, "project_preview_configs") == []
    assert rows(db, "appetize_migration_journal") == []


def test_a_new_session_takes_the_project_configuration_for_what_it_leaves_out(
    settings: Settings,
) -> None:
    db = settings.database_url or ""
    user = make_user(db)
    other = make_user(db)
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(
            """INSERT INTO project_preview_configs (project_id, device, device_type, options)
               VALUES (%s, 'pixel-8', 'android', %s)""",
            (user.project_id, Jsonb({"orientation": "landscape"})),
        )
    fill_pool(4)
    with TestClient(create_app(settings)) as client:

        def lease(who: Any, **body: Any) -> dict[str, Any]:
            answer = client.post(
                "/api/preview/sessions",
                json={"projectId": str(who.project_id), **body},
                headers=who.headers,
            )
            assert answer.status_code == 201, answer.text
            return dict(answer.json())

        saved = lease(user)
        named = lease(user, deviceType="ios", options={})
        plain = lease(other)

    assert (saved["device"], saved["deviceType"]) == ("pixel-8", "android")
    assert (named["device"], named["deviceType"]) == ("iphone-15", "ios")
    assert (plain["device"], plain["deviceType"]) == ("laptop", "web")
    with psycopg.connect(db) as c:
        configs: dict[str, Any] = dict(
            c.execute(
                "SELECT id::text, config FROM preview_sessions WHERE id::text = ANY(%s)",
                ([saved["id"], named["id"]],),
            ).fetchall()
        )
    assert configs == {saved["id"]: {"orientation": "landscape"}, named["id"]: {}}
