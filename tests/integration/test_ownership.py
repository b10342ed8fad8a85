"""Who may touch what: another user's session is invisible (404, never 403), another user's
project is forbidden, project members may lease, and the admin routes are for admins only.
Every refusal leaves Postgres and Redis exactly as they were."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.conftest import User, fill_pool, make_user
from tests.integration.stores import (
    db_snapshot,
    machine_state,
    ready_count,
    ready_machines,
    redis_snapshot,
)


@dataclass
class Env:
    client: TestClient
    database_url: str
    owner: User
    other: User
    session_id: str
    machine_id: str


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    database_url = settings.database_url or ""
    owner, other = make_user(database_url), make_user(database_url)
    fill_pool(3)
    with TestClient(create_app(settings)) as client:
        created = client.post(
            "/api/preview/sessions",
            json={"projectId": str(owner.project_id)},
            headers=owner.headers,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        yield Env(client, database_url, owner, other, body["id"], body["machineId"])


def _session_row(database_url: str, session_id: str) -> tuple[object, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, last_activity, ended_at, container_id, lease_epoch "
            "FROM preview_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _ledger(database_url: str, session_id: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT machine_id, epoch, released_at FROM machine_leases WHERE session_id = %s",
            (session_id,),
        ).fetchall()
    return [tuple(r) for r in rows]


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/heartbeat")],
    ids=["get", "delete", "heartbeat"],
)
def test_another_users_session_is_not_found_and_untouched(
    env: Env, method: str, suffix: str
) -> None:
    row_before = _session_row(env.database_url, env.session_id)
    ledger_before = _ledger(env.database_url, env.session_id)
    assert row_before[0] == "active"
    assert len(ledger_before) == 1 and ledger_before[0][2] is None
    assert machine_state(env.machine_id) == "leased"
    db_before, redis_before = db_snapshot(env.database_url), redis_snapshot()

    response = env.client.request(
        method, f"/api/preview/sessions/{env.session_id}{suffix}", headers=env.other.headers
    )

    _assert_error(response, 404, "not_found")
    # The same answer as for a session that does not exist at all: nothing to enumerate.
    missing = env.client.request(
        method,
        "/api/preview/sessions/00000000-0000-4000-8000-000000000000" + suffix,
        headers=env.other.headers,
    )
    _assert_error(missing, 404, "not_found")
    assert response.json() == missing.json()

    assert _session_row(env.database_url, env.session_id) == row_before
    assert _ledger(env.database_url, env.session_id) == ledger_before
    assert machine_state(env.machine_id) == "leased"
    assert db_snapshot(env.database_url) == db_before
    assert redis_snapshot() == redis_before
    # The owner still has it, live.
    mine = env.client.get(f"/api/preview/sessions/{env.session_id}", headers=env.owner.headers)
    assert mine.status_code == 200 and mine.json()["status"] == "active"


def test_another_users_project_is_forbidden_and_writes_nothing(env: Env) -> None:
    ready_before = ready_machines()
    db_before, redis_before = db_snapshot(env.database_url), redis_snapshot()

    response = env.client.post(
        "/api/preview/sessions",
        json={"projectId": str(env.owner.project_id)},
        headers=env.other.headers,
    )

    _assert_error(response, 403, "forbidden")
    assert db_snapshot(env.database_url) == db_before
    assert redis_snapshot() == redis_before
    assert ready_machines() == ready_before


def test_a_project_that_does_not_exist_is_forbidden(env: Env) -> None:
    db_before, redis_before = db_snapshot(env.database_url), redis_snapshot()
    response = env.client.post(
        "/api/preview/sessions",
        json={"projectId": "00000000-0000-4000-8000-000000000001"},
        headers=env.other.headers,
    )
    _assert_error(response, 403, "forbidden")
    assert db_snapshot(env.database_url) == db_before
    assert redis_snapshot() == redis_before


def test_a_project_member_can_lease(env: Env) -> None:
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO project_members (project_id, user_id) VALUES (%s, %s)",
            (env.owner.project_id, env.other.id),
        )
    before = ready_count()
    response = env.client.post(
        "/api/preview/sessions",
        json={"projectId": str(env.owner.project_id)},
        headers=env.other.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["projectId"] == str(env.owner.project_id)
    assert ready_count() == before - 1
    assert machine_state(body["machineId"]) == "leased"
    with psycopg.connect(env.database_url) as conn:
        row = conn.execute(
            "SELECT user_id, project_id, status FROM preview_sessions WHERE id = %s",
            (body["id"],),
        ).fetchone()
    assert row == (env.other.id, env.owner.project_id, "active")
    # The member's session is the member's: the owner of the project cannot see it.
    _assert_error(
        env.client.get(f"/api/preview/sessions/{body['id']}", headers=env.owner.headers),
        404,
        "not_found",
    )


def test_list_returns_only_own_sessions(env: Env) -> None:
    own = env.client.post(
        "/api/preview/sessions",
        json={"projectId": str(env.other.project_id)},
        headers=env.other.headers,
    )
    assert own.status_code == 201, own.text

    theirs = env.client.get(
        f"/api/preview/sessions?projectId={env.owner.project_id}", headers=env.other.headers
    )
    assert theirs.status_code == 200, theirs.text
    assert theirs.json() == {"sessions": []}

    everything = env.client.get("/api/preview/sessions", headers=env.other.headers)
    assert [s["id"] for s in everything.json()["sessions"]] == [own.json()["id"]]

    owner_view = env.client.get("/api/preview/sessions", headers=env.owner.headers)
    assert [s["id"] for s in owner_view.json()["sessions"]] == [env.session_id]


def test_admin_routes_refuse_non_admins(env: Env) -> None:
    db_before, redis_before = db_snapshot(env.database_url), redis_snapshot()

    _assert_error(env.client.get("/api/admin/pool", headers=env.owner.headers), 403, "forbidden")
    _assert_error(
        env.client.put(
            "/api/admin/pool/react-web/local", json={"min": 1, "max": 3}, headers=env.owner.headers
        ),
        403,
        "forbidden",
    )
    # Refused before the body is even read: a malformed one changes nothing either.
    _assert_error(
        env.client.put(
            "/api/admin/pool/react-web/local",
            content=b"{",
            headers={**env.owner.headers, "content-type": "application/json"},
        ),
        403,
        "forbidden",
    )

    assert db_snapshot(env.database_url) == db_before
    assert redis_snapshot() == redis_before


def test_admin_reads_the_pool_and_sets_bounds(env: Env) -> None:
    admin = make_user(env.database_url, admin=True)

    pool = env.client.get("/api/admin/pool", headers=admin.headers)
    assert pool.status_code == 200, pool.text
    pools = {(p["template"], p["region"]): p for p in pool.json()["pools"]}
    react = pools[("react-web", "local")]
    assert react["ready"] == 2 and react["leased"] == 1
    assert react["operatorSet"] is False

    put = env.client.put(
        "/api/admin/pool/react-web/local", json={"min": 1, "max": 3}, headers=admin.headers
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"template": "react-web", "region": "local", "min": 1, "max": 3}
    with psycopg.connect(env.database_url) as conn:
        rows = conn.execute(
            "SELECT template, region, min_size, max_size, updated_by FROM pool_targets"
        ).fetchall()
    assert rows == [("react-web", "local", 1, 3, admin.id)]

    after = {
        (p["template"], p["region"]): p
        for p in env.client.get("/api/admin/pool", headers=admin.headers).json()["pools"]
    }
    assert after[("react-web", "local")]["min"] == 1
    assert after[("react-web", "local")]["max"] == 3
    assert after[("react-web", "local")]["operatorSet"] is True
