"""Reopening a project: a session's files are kept when it ends, by whatever path (DELETE, the
reaper's idle end, reconcile announcing an end Redis missed), and `POST /api/preview/sessions
{"restore": true}` starts the next session of the project from them, its machine hydrated
before the answer. On a real uvicorn server with a simulated agent, and on the worker's jobs.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from arq.connections import ArqRedis

from app.settings import Settings
from pool.core.states import PoolState
from pool.edits.edit_log import Change, EditLog, EditLogLimits
from pool.services.lifecycle import release_session_machine
from pool.services.project_files import FileKeeper, PostgresProjectFiles
from pool.store.store_identity import identity_key
from sql import sessions
from sql.database import open_pool
from tests.conftest import User, fill_pool, make_user
from tests.integration.helpers import fill_ready, make_idle
from tests.integration.live import live_server
from tests.integration.test_gateway import Server, _set_tokens, receive_until, send
from tests.integration.test_worker_jobs import _config, _lease_and_commit
from workers import jobs
from workers.context import WorkerContext

APP = "export default () => 'kept ✓'\n"
KEPT = {"src/App.jsx": APP.encode(), "index.html": b"\x00", "notes.txt": b"second"}


@dataclass
class Live:
    server: Server
    user: User
    machines: list[str]
    database_url: str

    @property
    def base(self) -> str:
        return f"http://{self.server.host}/api/preview/sessions"

    def create(self, user: User | None = None, **extra: Any) -> httpx.Response:
        user = user or self.user
        return httpx.post(
            self.base,
            json={"projectId": str(self.user.project_id), **extra},
            headers=user.headers,
            timeout=30,
        )

    def end(self, session: dict[str, Any]) -> None:
        answer = httpx.delete(f"{self.base}/{session['id']}", headers=self.user.headers)
        assert answer.status_code == 204, answer.text

    def kept(self) -> dict[str, Any] | None:
        return kept_row(self.database_url, self.user.project_id)


def kept_row(database_url: str, project_id: uuid.UUID) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT session_id, seq, paths, contents, bytes FROM project_files "
            "WHERE project_id = %s",
            (project_id,),
        ).fetchone()
    if row is None:
        return None
    session_id, seq, paths, contents, size = row
    files = {str(p): bytes(c) for p, c in zip(paths, contents, strict=True)}
    return {"session": str(session_id), "seq": seq, "files": files, "bytes": size}


def age_kept_files(database_url: str, project_id: uuid.UUID, hours: float) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE project_files SET ended_at = now() - make_interval(secs => %s) "
            "WHERE project_id = %s",
            (hours * 3600, project_id),
        )


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    machines = fill_pool(2)
    _set_tokens(machines)
    user = make_user(settings.database_url or "")
    with live_server(settings) as host:
        yield Live(Server(host), user, machines, settings.database_url or "")


def edit_and_end(live: Live) -> dict[str, Any]:
    """A session of the project that writes KEPT (a deletion included), then is deleted."""
    answer = live.create()
    assert answer.status_code == 201, answer.text
    session: dict[str, Any] = answer.json()
    assert session["restored"] is None
    with live.server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        first = [{"path": "src/App.jsx", "content": APP}, {"path": "index.html", "delete": True}]
        for seq, changes in enumerate([first, [{"path": "notes.txt", "content": "second"}]], 1):
            send(editor, "patch", seq=seq, changes=changes)
            assert receive_until(editor, "ack")["seq"] == seq
    live.end(session)
    return session


def test_the_files_kept_at_delete_start_the_next_session_hydrated_before_its_answer(
    live: Live,
) -> None:
    first = edit_and_end(live)
    # Kept as the snapshot held them: values verbatim, the deletion as its tombstone.
    assert live.kept() == {
        "session": first["id"],
        "seq": 2,
        "files": KEPT,
        "bytes": sum(len(v) for v in KEPT.values()),
    }

    other = next(m for m in live.machines if m != first["machineId"])
    with live.server.agent(other) as agent:
        send(agent, "hello", machineId=other, session=None, appliedSeq=0)
        send(agent, "ping")
        receive_until(agent, "pong")  # the socket listens on its machine's channel
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            creating = pool.submit(live.create, restore=True)
            assign = receive_until(agent, "assign")
            hydrate = receive_until(agent, "hydrate")
            assert not creating.done()  # the answer waits for the machine
            assert (hydrate["session"], hydrate["seq"]) == (assign["session"], 1)
            assert hydrate["epoch"] == assign["epoch"]
            assert hydrate["files"] == {"src/App.jsx": APP, "notes.txt": "second"}
            assert hydrate["deleted"] == ["index.html"]
            send(agent, "applied", seq=1)
            answer = creating.result(timeout=30)
        assert answer.status_code == 201, answer.text
        session = answer.json()
        assert session["id"] == assign["session"]
        restored = session["restored"]
        assert (restored["fromSession"], restored["seq"], restored["hydrated"]) == (
            first["id"],
            1,
            True,
        )
        # No file sent: the editor is given them, and numbers its first patch 2.
        with live.server.editor(session) as editor:
            send(editor, "hello", lastSeq=0)
            welcome = receive_until(editor, "welcome")
            assert (welcome["head"], welcome["applied"]) == (1, 1)
            snapshot = receive_until(editor, "snapshot")
            assert snapshot["seq"] == 1
            assert snapshot["files"] == hydrate["files"]
            assert snapshot["deleted"] == ["index.html"]
            send(editor, "patch", seq=2, changes=[{"path": "notes.txt", "content": "third"}])
            assert receive_until(editor, "ack")["seq"] == 2
            assert receive_until(agent, "patch")["seq"] == 2


def restore_nothing(live: Live) -> dict[str, Any]:
    """A restore that finds nothing to restore: the session starts from its template, as
    without `restore` (no files in its log)."""
    answer = live.create(restore=True)
    assert answer.status_code == 201, answer.text
    session: dict[str, Any] = answer.json()
    assert session["restored"] is None
    with live.server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        assert receive_until(editor, "welcome")["head"] == 0
    return session


def test_a_restore_with_no_files_kept_starts_from_the_template(live: Live) -> None:
    session = restore_nothing(live)

    live.end(session)
    assert live.kept() is None  # no edits: nothing to keep


def test_files_kept_longer_ago_than_the_retention_are_not_restored(
    live: Live, settings: Settings
) -> None:
    edit_and_end(live)
    age_kept_files(
        live.database_url, live.user.project_id, settings.preview_snapshot_retention_hours + 1
    )

    restore_nothing(live)

    assert live.kept() is not None  # never read again; the worker's tick deletes it


def test_files_kept_from_another_template_are_not_restored(live: Live) -> None:
    """An expo project's files over a Vite template would be another project: the session
    starts from its own template, and the kept files stay for a session of theirs."""
    ended = edit_and_end(live)
    with psycopg.connect(live.database_url, autocommit=True) as conn:
        conn.execute("UPDATE preview_sessions SET template = 'expo' WHERE id = %s", (ended["id"],))

    restore_nothing(live)

    assert live.kept() is not None


def test_another_users_project_is_refused_as_it_is_without_restore(live: Live) -> None:
    edit_and_end(live)
    kept = live.kept()
    stranger = make_user(live.database_url)

    refused = live.create(stranger, restore=True)
    plain = live.create(stranger)

    assert refused.status_code == plain.status_code == 403
    assert refused.json() == plain.json()
    assert live.kept() == kept
    with psycopg.connect(live.database_url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM preview_sessions WHERE user_id = %s", (stranger.id,)
        ).fetchone()
    assert count == (0,)


@pytest.mark.parametrize(
    "corruption",
    [
        # A value that is not UTF-8: the edit log never wrote it.
        "paths = ARRAY['a'], contents = ARRAY['\\xfffe'::bytea], bytes = 2",
        # A path twice: which value is the file's?
        "paths = ARRAY['a', 'a'], contents = ARRAY['1'::bytea, '2'::bytea], bytes = 2",
        # Over the snapshot's 8 MiB cap.
        "paths = ARRAY['big'], contents = ARRAY[convert_to(repeat('x', 8388609), 'UTF8')], "
        "bytes = 8388609",
    ],
    ids=["not-utf8", "path-twice", "oversized"],
)
def test_kept_files_that_cannot_be_restored_are_dropped_and_the_session_starts_plain(
    live: Live, corruption: str
) -> None:
    edit_and_end(live)
    with psycopg.connect(live.database_url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE project_files SET {corruption} WHERE project_id = %s",  # the test's own SQL
            (live.user.project_id,),
        )

    restore_nothing(live)

    assert live.kept() is None  # dropped


def test_a_booting_session_starts_from_the_kept_files_too(settings: Settings) -> None:
    # No ready machine: every session is an on-demand boot (202), which no worker runs here.
    user = make_user(settings.database_url or "")
    with live_server(settings) as host:
        live = Live(Server(host), user, [], settings.database_url or "")
        first = live.create()
        assert first.status_code == 202, first.text
        with live.server.editor(first.json()) as editor:
            send(editor, "hello", lastSeq=0)
            receive_until(editor, "welcome")
            send(editor, "patch", seq=1, changes=[{"path": "src/App.jsx", "content": APP}])
            assert receive_until(editor, "ack")["seq"] == 1
        live.end(first.json())

        answer = live.create(restore=True)

        assert answer.status_code == 202, answer.text
        session = answer.json()
        assert session["status"] == "booting"
        # Not applied yet: the boot makes the session active once its machine applied them.
        assert session["restored"]["hydrated"] is False
        with live.server.editor(session) as editor:
            send(editor, "hello", lastSeq=0)
            assert receive_until(editor, "welcome")["head"] == 1
            assert receive_until(editor, "snapshot")["files"] == {"src/App.jsx": APP}


@pytest.fixture
async def worker(settings: Settings, tmp_path: Path, arq: ArqRedis) -> AsyncIterator[WorkerContext]:
    # Bounds (0, 0): nothing boots; the sessions lease registered machines with no process.
    context = await WorkerContext.open(_config(settings, tmp_path / "provider", (0, 0)), arq)
    await context.redis.set(identity_key(), "test")  # a store that has run before
    try:
        yield context
    finally:
        await context.close()


async def _edited_session(worker: WorkerContext, database_url: str) -> tuple[User, uuid.UUID]:
    """A new user's live session whose editor wrote a file and deleted one."""
    user = make_user(database_url)
    await fill_ready(worker.redis, 1)
    session_id, _ = await _lease_and_commit(worker, user)
    changes = [Change("src/App.jsx", APP), Change("index.html", None)]
    await EditLog(worker.redis).append(str(session_id), 1, changes, user=str(user.id))
    return user, session_id


def _kept_from(session_id: uuid.UUID) -> dict[str, Any]:
    files = {"src/App.jsx": APP.encode(), "index.html": b"\x00"}
    return {"session": str(session_id), "seq": 1, "files": files, "bytes": len(APP.encode()) + 1}


async def test_an_idle_end_keeps_the_files_and_the_reconcile_tick_prunes_them_once_expired(
    settings: Settings, worker: WorkerContext
) -> None:
    database_url = settings.database_url or ""
    user, session_id = await _edited_session(worker, database_url)
    make_idle(database_url, session_id)
    ctx = {"deps": worker, "redis": worker.arq}

    assert (await jobs.reap(ctx))["ended"] == 1

    assert kept_row(database_url, user.project_id) == _kept_from(session_id)
    assert worker.metrics.project_files_total.labels("kept").value == 1
    # Within the retention the tick leaves them; past it, they go.
    assert (await jobs.reconcile(ctx))["project_files_pruned"] == 0
    age_kept_files(database_url, user.project_id, worker.config.snapshot_retention_seconds / 3600)
    assert (await jobs.reconcile(ctx))["project_files_pruned"] == 1
    assert kept_row(database_url, user.project_id) is None


async def test_an_end_redis_never_heard_of_keeps_the_files_when_reconcile_announces_it(
    settings: Settings, worker: WorkerContext
) -> None:
    database_url = settings.database_url or ""
    user, session_id = await _edited_session(worker, database_url)
    async with worker.db.connection() as conn:  # the end committed; its announce never ran
        assert await sessions.end_session(conn, session_id, reason="deleted") is not None
    assert kept_row(database_url, user.project_id) is None

    await jobs.reconcile({"deps": worker, "redis": worker.arq})

    assert kept_row(database_url, user.project_id) == _kept_from(session_id)
    assert await EditLog(worker.redis).ended(str(session_id)) == ("deleted", "ended")


@pytest.mark.parametrize(
    ("keeper_kind", "outcome"), [("closed_pool", "keep_failed"), ("tiny_caps", "keep_refused")]
)
async def test_files_that_cannot_be_kept_are_counted_and_the_end_goes_through(
    settings: Settings, worker: WorkerContext, keeper_kind: str, outcome: str
) -> None:
    database_url = settings.database_url or ""
    user, session_id = await _edited_session(worker, database_url)
    async with worker.db.connection() as conn:
        ended = await sessions.end_session(conn, session_id, reason="deleted")
    assert ended is not None and ended.machine_id is not None
    if keeper_kind == "closed_pool":  # Postgres, as a process that lost it sees it
        closed = await open_pool(database_url, min_size=1, max_size=1)
        await closed.close()
        keeper = FileKeeper(PostgresProjectFiles(closed), worker.metrics)
    else:
        limits = EditLogLimits(snapshot_bytes=8)
        keeper = FileKeeper(PostgresProjectFiles(worker.db), worker.metrics, limits)

    await release_session_machine(worker.broker, ended, worker.enqueue_recycle, keeper=keeper)

    assert worker.metrics.project_files_total.labels(outcome).value == 1
    assert worker.metrics.project_files_total.labels("kept").value == 0
    assert kept_row(database_url, user.project_id) is None
    # The end went through: editors told, the machine on its way to be recycled.
    assert await EditLog(worker.redis).ended(str(session_id)) == ("deleted", "ended")
    record = await worker.inventory.machine(ended.machine_id)
    assert record is not None and record.state is PoolState.RECYCLING
