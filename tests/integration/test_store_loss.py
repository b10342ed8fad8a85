"""Store loss on the gateway: a session's edit log lost with Redis is noticed by both sockets, the
editor re-sends, the agent counts from 1 again, and nothing numbered under the lost log is
acked or applied. And the log's bounds: agent reports clamped to the head, a user's budget,
the files deleted when the session ends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from app.settings import Settings
from pool.edits.edit_log import EditLog
from pool.store.keys import DEFAULT_PREFIX
from pool.store.redis_errors import resolved
from tests.conftest import REDIS_URL, fill_pool, make_user
from tests.integration.live import live_server
from tests.integration.test_gateway import Server, _set_tokens, receive_until, send


def _redis(action: Any) -> Any:
    async def run() -> Any:
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            return await action(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def lose_edit_log(session_id: str) -> None:
    """What a Redis restart without persistence does to one session's log."""

    async def drop(client: aioredis.Redis) -> None:
        await client.delete(
            *(f"{DEFAULT_PREFIX}{kind}:{session_id}" for kind in ("edits", "snap", "snapmeta"))
        )

    _redis(drop)


def session_keys(session_id: str) -> dict[str, int]:
    async def count(client: aioredis.Redis) -> dict[str, int]:
        return {
            kind: await client.exists(f"{DEFAULT_PREFIX}{kind}:{session_id}")
            for kind in ("edits", "snap", "snapmeta")
        }

    result: dict[str, int] = _redis(count)
    return result


def applied_mark(session_id: str) -> int:
    async def read(client: aioredis.Redis) -> int:
        return await EditLog(client).applied(session_id)

    result: int = _redis(read)
    return result


@pytest.fixture
def started(settings: Settings) -> Iterator[tuple[Server, httpx.Client, Any]]:
    """A live server whose users' edit budget is 1 MiB, two ready machines, one user."""
    tuned = settings.model_copy(update={"preview_edit_user_budget_bytes": 1024 * 1024})
    machines = fill_pool(2)
    _set_tokens(machines)
    user = make_user(tuned.database_url or "")
    with live_server(tuned) as host, httpx.Client(base_url=f"http://{host}") as http:
        yield Server(host), http, (user, tuned)


def lease(http: httpx.Client, user: Any) -> dict[str, Any]:
    response = http.post(
        "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def leased_machine(settings: Settings, session_id: str) -> str:
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        row = conn.execute(
            "SELECT container_id FROM preview_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    assert row is not None and row[0]
    return str(row[0])


def test_a_lost_log_is_resent_by_the_editor_and_counted_again_by_the_agent(started: Any) -> None:
    server, http, (user, settings) = started
    session = lease(http, user)
    machine = leased_machine(settings, session["id"])
    with server.agent(machine) as agent:
        send(agent, "hello", machineId=machine, session=None, appliedSeq=0)
        first = receive_until(agent, "assign")
        with server.editor(session) as editor:
            send(editor, "hello", lastSeq=0)
            welcome = receive_until(editor, "welcome")
            old = welcome["epoch"]
            assert first["epoch"] == old
            for seq in (1, 2):
                send(
                    editor,
                    "patch",
                    seq=seq,
                    epoch=old,
                    changes=[{"path": "a.js", "content": f"v{seq}"}],
                )
                assert receive_until(editor, "ack")["seq"] == seq
                assert receive_until(agent, "patch")["seq"] == seq
                send(agent, "applied", seq=seq)
                assert receive_until(editor, "applied")["seq"] == seq

            lose_edit_log(session["id"])
            # The next patch finds another log: not appended, not acked; a new welcome instead.
            send(editor, "patch", seq=3, epoch=old, changes=[{"path": "a.js", "content": "v3"}])
            again = receive_until(editor, "welcome")
            new = again["epoch"]
            assert new != old and (again["head"], again["applied"]) == (0, 0)
            # A straggler numbered under the lost log is refused, and changes nothing.
            send(editor, "patch", seq=4, epoch=old, changes=[{"path": "a.js", "content": "v4"}])
            refused = receive_until(editor, "error")
            assert (refused["code"], refused["seq"]) == ("stale_epoch", 4)
            # An `applied` the agent counted in the lost log is not believed: it is dropped for
            # its epoch (not merely clamped to the new head), and the gateway assigns the session
            # again under the new epoch at once, before any patch of the new log exists.
            send(agent, "applied", seq=2)
            assign = receive_until(agent, "assign")
            assert (assign["session"], assign["epoch"]) == (session["id"], new)
            assert applied_mark(session["id"]) == 0
            # The editor re-sends its files as the new log's first patch; the agent gets it as
            # seq 1.
            resent = [{"path": "a.js", "content": "v3"}, {"path": "b.js", "content": "b"}]
            send(editor, "patch", seq=1, epoch=new, changes=resent)
            assert receive_until(editor, "ack")["seq"] == 1
            patch = receive_until(agent, "patch")
            assert (patch["seq"], patch["changes"]) == (1, resent)
            send(agent, "applied", seq=1)
            assert receive_until(editor, "applied")["seq"] == 1
            # An agent's report beyond the head is clamped to it.
            send(agent, "applied", seq=50)
            assert receive_until(editor, "applied")["seq"] == 1
            assert applied_mark(session["id"]) == 1


def test_a_hello_from_a_lost_log_starts_at_the_new_logs_start(started: Any) -> None:
    server, http, (user, _) = started
    session = lease(http, user)
    with server.editor(session) as first:
        send(first, "hello", lastSeq=0)
        old = receive_until(first, "welcome")["epoch"]
        for seq in (1, 2, 3):
            send(
                first, "patch", seq=seq, epoch=old, changes=[{"path": "a.js", "content": str(seq)}]
            )
            receive_until(first, "ack")
    lose_edit_log(session["id"])
    with server.editor(session) as second:
        # It knew seq 3 of the old log: in the new one, that number means nothing.
        send(second, "hello", lastSeq=3, epoch=old)
        welcome = receive_until(second, "welcome")
        new = welcome["epoch"]
        assert new != old and welcome["head"] == 0
        send(second, "patch", seq=1, epoch=new, changes=[{"path": "a.js", "content": "again"}])
        assert receive_until(second, "ack")["seq"] == 1
    with server.editor(session) as third:
        send(third, "hello", lastSeq=0, epoch=new)
        assert receive_until(third, "welcome")["head"] == 1
        assert receive_until(third, "patch")["changes"] == [{"path": "a.js", "content": "again"}]


def test_a_users_budget_refuses_and_an_end_gives_it_back(started: Any) -> None:
    server, http, (user, _) = started
    big = "x" * 400_000  # the user's budget here is 1 MiB; snapshot + stream count
    first = lease(http, user)
    with server.editor(first) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        send(editor, "patch", seq=1, changes=[{"path": "a.txt", "content": big}])
        assert receive_until(editor, "ack")["seq"] == 1
        send(editor, "patch", seq=2, changes=[{"path": "b.txt", "content": big}])
        refused = receive_until(editor, "error")
        assert (refused["code"], refused["seq"]) == ("over_budget", 2)
        # Nothing changed: the next patch still takes seq 2, and the snapshot has a.txt only.
        send(editor, "patch", seq=2, changes=[{"path": "c.txt", "content": "small"}])
        assert receive_until(editor, "ack")["seq"] == 2
    assert session_keys(first["id"]) == {"edits": 1, "snap": 1, "snapmeta": 1}

    ended = http.delete(f"/api/preview/sessions/{first['id']}", headers=user.headers)
    assert ended.status_code in (200, 204), ended.text
    # Ended: the files are gone at once, only the small `ended` mark stays.
    assert session_keys(first["id"]) == {"edits": 0, "snap": 0, "snapmeta": 1}
    second = lease(http, user)
    with server.editor(second) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        send(editor, "patch", seq=1, changes=[{"path": "a.txt", "content": big}])
        assert receive_until(editor, "ack")["seq"] == 1  # the ended session's bytes came back


def test_editors_hear_offline_when_the_agent_leaves_and_not_while_it_is_back(
    started: Any,
) -> None:
    server, http, (user, settings) = started
    session = lease(http, user)
    machine = leased_machine(settings, session["id"])
    with server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        with server.agent(machine) as agent:
            send(agent, "hello", machineId=machine, session=None, appliedSeq=0)
            receive_until(agent, "assign")
            # A second socket of the same agent (a reconnect that overlaps the old socket).
            with server.agent(machine) as again:
                send(again, "hello", machineId=machine, session=session["id"], appliedSeq=0)
                send(again, "status", state="ready")
                assert receive_until(editor, "status")["state"] == "ready"
                agent.close()  # the old socket goes: the agent is still there
                time.sleep(0.5)  # the server has handled that close by now
                send(editor, "ping")
                frames: list[dict[str, Any]] = []
                while not frames or frames[-1]["type"] != "pong":
                    frames.append(json.loads(editor.recv(timeout=10)))
                assert [f for f in frames if f["type"] == "status"] == [], frames
            # Now no socket of the machine is left.
            status = receive_until(editor, "status")
            assert (status["state"], status["detail"]) == (
                "offline",
                "the preview machine disconnected",
            )
    with server.editor(session) as late:
        send(late, "hello", lastSeq=0)
        assert receive_until(late, "welcome")["state"] == "offline"


def test_a_heartbeat_reports_a_lease_redis_lost_or_that_changed_hands(started: Any) -> None:
    _, http, (user, settings) = started
    session = lease(http, user)
    machine = leased_machine(settings, session["id"])
    beat = f"/api/preview/sessions/{session['id']}/heartbeat"
    assert http.post(beat, headers=user.headers).status_code == 204

    async def fence(client: aioredis.Redis) -> None:
        await resolved(client.hincrby(f"{DEFAULT_PREFIX}m:{machine}", "epoch", 1))

    _redis(fence)
    lost = http.post(beat, headers=user.headers)
    assert (lost.status_code, lost.json()["error"]) == (409, "lease_lost")

    async def forget(client: aioredis.Redis) -> None:
        await client.delete(f"{DEFAULT_PREFIX}m:{machine}")

    _redis(forget)
    unknown = http.post(beat, headers=user.headers)
    assert (unknown.status_code, unknown.json()["error"]) == (503, "lease_unknown")
    assert unknown.headers["retry-after"] == "5"
