"""The rollout flags on real Postgres and Redis: `GET /api/preview/backend` answers as the flags
say, the admin API and the CLI change them under the same rules, every change is audited
(who, when, old, new), bad input changes nothing, and each web process's cache follows a change
at once over pub/sub and within its TTL without it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis
from starlette.testclient import TestClient

from app import cli
from app.auth import mint_hs256_token
from app.rollout.decision import FlagSet, in_rollout
from app.rollout.flag_cache import FlagCache, announce_change, flag_set
from app.server import create_app
from app.settings import Settings
from pool.store.keys import DEFAULT_PREFIX, Keys
from sql.database import open_pool
from sql.fallbacks import record_fallback
from sql.flags import load_flags
from tests.conftest import JWT_SECRET, TOKEN_SECRET, User, make_user

BACKEND = "/api/preview/backend"
FLAGS = "/api/admin/flags"
CHANNEL = Keys(DEFAULT_PREFIX).flags_channel


def reset_flags(database_url: str) -> None:
    """Flags are not in clean_stores' tables: every test here starts from none set."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE preview_rollout SET kill_switch = false, percentage = 0;"
            " TRUNCATE preview_flag_audit, preview_plan_flags, preview_user_flags,"
            " preview_project_flags, preview_fallbacks"
        )


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings, as the API sees them and as the CLI loads them."""
    reset_flags(settings.database_url or "")
    for name, value in {
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(settings.preview_data_dir),
    }.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
def client(env: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(env)) as test_client:
        yield test_client


def _admin(settings: Settings) -> tuple[User, dict[str, str]]:
    """An admin whose token carries an email (the audit's `actor`)."""
    user = make_user(settings.database_url or "", admin=True)
    token = mint_hs256_token(JWT_SECRET, user_id=user.id, email="ops@example.test", admin=True)
    return user, {"Authorization": f"Bearer {token}"}


def _backend(client: TestClient, user: User, project: uuid.UUID | None = None) -> dict[str, Any]:
    answer = client.get(
        BACKEND, params={"projectId": str(project or user.project_id)}, headers=user.headers
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _put(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    answer = client.put(f"{FLAGS}/{path}", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _stored(settings: Settings) -> tuple[Any, ...]:
    """Every flag and the audit's length, straight from Postgres."""
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        return tuple(
            conn.execute(query).fetchall()
            for query in (
                "SELECT kill_switch, percentage FROM preview_rollout",
                "SELECT user_id::text, backend FROM preview_user_flags ORDER BY 1",
                "SELECT project_id::text, backend FROM preview_project_flags ORDER BY 1",
                "SELECT plan, backend FROM preview_plan_flags ORDER BY 1",
                "SELECT count(*) FROM preview_flag_audit",
            )
        )


def test_the_percentage_rollout_follows_the_users_buckets_and_raising_it_only_adds(
    env: Settings, client: TestClient
) -> None:
    _, admin = _admin(env)
    users = [make_user(env.database_url or "") for _ in range(60)]
    assert {_backend(client, u)["reason"] for u in users} == {"default"}  # 0 %: not started

    on_new: dict[int, set[uuid.UUID]] = {}
    for percentage in (20, 55):
        _put(client, "global", {"percentage": percentage}, admin)
        answers = {u.id: _backend(client, u) for u in users}
        again = {u.id: _backend(client, u)["backend"] for u in users}
        assert again == {k: v["backend"] for k, v in answers.items()}  # stable per user
        on_new[percentage] = {k for k, v in answers.items() if v["backend"] == "local"}
        assert {v["reason"] for v in answers.values()} == {"percentage"}
        assert on_new[percentage] == {u.id for u in users if in_rollout(u.id, Decimal(percentage))}
        assert all(v["appetize"] is None for v in answers.values())
    assert on_new[20] < on_new[55]  # raising it added users and took nobody out


def test_overrides_decide_over_the_percentage_project_first(
    env: Settings, client: TestClient
) -> None:
    _, admin = _admin(env)
    user = make_user(env.database_url or "")
    _put(client, "global", {"percentage": 100}, admin)
    assert _backend(client, user)["backend"] == "local"

    _put(client, "plans/free", {"backend": "appetize"}, admin)
    assert _backend(client, user)["backend"] == "appetize"
    _put(client, f"users/{user.id}", {"backend": "new"}, admin)
    assert (_backend(client, user)["backend"], _backend(client, user)["reason"]) == (
        "local",
        "flag",
    )
    _put(client, f"projects/{user.project_id}", {"backend": "appetize"}, admin)
    assert _backend(client, user)["detail"] == "project flag: appetize"

    gone = client.delete(f"{FLAGS}/projects/{user.project_id}", headers=admin)
    assert gone.status_code == 204
    assert _backend(client, user)["detail"] == "user flag: new"
    again = client.delete(f"{FLAGS}/projects/{user.project_id}", headers=admin)
    assert again.status_code == 404  # nothing left to remove


def test_the_kill_switch_sends_everyone_to_appetize_with_the_projects_settings(
    env: Settings, client: TestClient
) -> None:
    _, admin = _admin(env)
    user = make_user(env.database_url or "")
    with psycopg.connect(env.database_url or "", autocommit=True) as conn:
        conn.execute(
            """INSERT INTO appetize_previews (project_id, public_key, platform, device,
                   os_version, scale)
               VALUES (%s, 'b_abc123', 'ios', 'iphone15pro', '17.0', '75')""",
            (user.project_id,),
        )
    _put(client, "global", {"percentage": 100}, admin)
    _put(client, f"projects/{user.project_id}", {"backend": "new"}, admin)
    assert _backend(client, user)["backend"] == "local"

    _put(client, "global", {"killSwitch": True}, admin)

    answer = _backend(client, user)
    assert (answer["backend"], answer["reason"]) == ("appetize", "kill_switch")
    assert answer["appetize"] == {
        "publicKey": "b_abc123",
        "platform": "ios",
        "device": "iphone15pro",
        "osVersion": "17.0",
        "scale": "75",
    }
    _put(client, "global", {"killSwitch": False}, admin)
    assert _backend(client, user)["backend"] == "local"


def test_a_recent_fallback_keeps_that_editor_on_appetize_for_its_window(
    env: Settings, client: TestClient
) -> None:
    _, admin = _admin(env)
    user, other = make_user(env.database_url or ""), make_user(env.database_url or "")
    _put(client, "global", {"percentage": 100}, admin)

    async def record() -> None:
        async with await psycopg.AsyncConnection.connect(env.database_url or "") as conn:
            await record_fallback(
                conn, project_id=user.project_id, user_id=user.id, reason="start_failed"
            )

    asyncio.run(record())
    answer = _backend(client, user)
    assert (answer["backend"], answer["reason"]) == ("appetize", "fallback")
    assert "start_failed" in answer["detail"]
    assert _backend(client, other)["backend"] == "local"  # only that project and user

    with psycopg.connect(env.database_url or "", autocommit=True) as conn:
        conn.execute(
            "UPDATE preview_fallbacks SET at = now() - make_interval(secs => %s + 1)",
            (env.preview_fallback_window_seconds,),
        )
    assert _backend(client, user)["backend"] == "local"  # the window has passed


def test_a_project_configured_for_what_this_deployment_does_not_serve_answers_platform(
    env: Settings, client: TestClient
) -> None:
    _, admin = _admin(env)
    user = make_user(env.database_url or "")
    _put(client, f"users/{user.id}", {"backend": "new"}, admin)
    with psycopg.connect(env.database_url or "", autocommit=True) as conn:
        conn.execute(
            """INSERT INTO project_preview_configs (project_id, template, device_type)
               VALUES (%s, 'react-native-web', 'ios')""",
            (user.project_id,),
        )
    assert _backend(client, user)["backend"] == "local"  # iOS renders as react-native-web
    with psycopg.connect(env.database_url or "", autocommit=True) as conn:
        conn.execute(
            "UPDATE project_preview_configs SET template = 'swift-native' WHERE project_id = %s",
            (user.project_id,),
        )
    answer = _backend(client, user)
    assert (answer["backend"], answer["reason"]) == ("appetize", "platform")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"projectId": "not-a-uuid"}, 400, "invalid_id"),
        ({"projectId": ""}, 400, "invalid_id"),
        ({}, 400, "invalid_query"),
        ({"projectId": str(uuid.uuid4()), "extra": "1"}, 400, "invalid_query"),
        ({"projectId": "OTHER"}, 404, "not_found"),  # another user's project
        ({"projectId": str(uuid.uuid4())}, 404, "not_found"),  # nobody's
    ],
)
def test_the_backend_route_refuses_what_it_cannot_answer(
    env: Settings, client: TestClient, query: dict[str, str], status: int, code: str
) -> None:
    user, other = make_user(env.database_url or ""), make_user(env.database_url or "")
    if query.get("projectId") == "OTHER":
        query = {"projectId": str(other.project_id)}
    answer = client.get(BACKEND, params=query, headers=user.headers)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert client.get(BACKEND, params={"projectId": str(user.project_id)}).status_code == 401


def test_every_change_is_audited_with_who_when_old_and_new(
    env: Settings, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_user, admin = _admin(env)
    user = make_user(env.database_url or "")
    started = datetime.now(UTC)
    _put(client, "global", {"killSwitch": True, "percentage": 12.5}, admin)
    _put(client, "global", {"percentage": 12.5}, admin)  # no change: not audited
    _put(client, f"users/{user.id}", {"backend": "new"}, admin)
    _put(client, f"users/{user.id}", {"backend": "appetize"}, admin)
    _put(client, "plans/pro", {"backend": "new"}, admin)
    assert client.delete(f"{FLAGS}/users/{user.id}", headers=admin).status_code == 204
    assert (
        cli.main(["flags", "set", "--percentage", "30", "--project", str(user.project_id), "new"])
        == 0
    )
    finished = datetime.now(UTC)
    assert "percentage: 12.5 -> 30" in capsys.readouterr().out

    answer = client.get(f"{FLAGS}/audit", headers=admin)
    assert answer.status_code == 200, answer.text
    changes = answer.json()["changes"]
    seen = [(c["flag"], c["old"], c["new"]) for c in reversed(changes)]
    assert seen == [
        ("killSwitch", False, True),
        ("percentage", 0, 12.5),
        (f"user:{user.id}", None, "new"),
        (f"user:{user.id}", "new", "appetize"),
        ("plan:pro", None, "new"),
        (f"user:{user.id}", "appetize", None),
        ("percentage", 12.5, 30),
        (f"project:{user.project_id}", None, "new"),
    ]
    by_api, by_cli = changes[2:], changes[:2]
    assert {(c["actorId"], c["actor"]) for c in by_api} == {
        (str(admin_user.id), "ops@example.test")
    }
    assert all(c["actorId"] is None and c["actor"].startswith("cli:") for c in by_cli)
    assert all(started <= datetime.fromisoformat(c["at"]) <= finished for c in changes)

    one_flag = client.get(f"{FLAGS}/audit", params={"flag": "percentage"}, headers=admin)
    assert [c["new"] for c in one_flag.json()["changes"]] == [30, 12.5]
    older = client.get(
        f"{FLAGS}/audit", params={"beforeId": changes[1]["id"], "limit": 2}, headers=admin
    )
    assert [c["id"] for c in older.json()["changes"]] == [c["id"] for c in changes[2:4]]

    shown = client.get(FLAGS, headers=admin).json()
    assert shown["rollout"]["killSwitch"] is True and shown["rollout"]["percentage"] == 30
    assert [(o["scope"], o["backend"]) for o in shown["overrides"]] == [
        ("plan", "new"),
        ("project", "new"),
    ]


# (case, method, path, body, as admin, status, code): refused, and nothing stored.
REFUSED = [
    ("percentage over 100", "PUT", "global", {"percentage": 100.5}, True, 400, "invalid_body"),
    ("negative percentage", "PUT", "global", {"percentage": -1}, True, 400, "invalid_body"),
    ("percentage as text", "PUT", "global", {"percentage": "50"}, True, 400, "invalid_body"),
    ("kill switch as text", "PUT", "global", {"killSwitch": "yes"}, True, 400, "invalid_body"),
    ("unknown field", "PUT", "global", {"percent": 5}, True, 400, "invalid_body"),
    ("unknown backend", "PUT", "users/USER", {"backend": "fly"}, True, 400, "invalid_body"),
    ("no backend", "PUT", "users/USER", {}, True, 400, "invalid_body"),
    ("bad user id", "PUT", "users/12345", {"backend": "new"}, True, 400, "invalid_id"),
    ("bad project id", "DELETE", "projects/x", None, True, 400, "invalid_id"),
    ("bad plan name", "PUT", "plans/Pro!", {"backend": "new"}, True, 400, "invalid_id"),
    ("unknown user", "PUT", "users/NOBODY", {"backend": "new"}, True, 404, "not_found"),
    ("unknown plan", "PUT", "plans/platinum", {"backend": "new"}, True, 404, "not_found"),
    ("not an admin", "PUT", "global", {"killSwitch": True}, False, 403, "forbidden"),
    ("not an admin", "PUT", "users/USER", {"backend": "new"}, False, 403, "forbidden"),
    ("not an admin", "DELETE", "plans/pro", None, False, 403, "forbidden"),
    ("not an admin", "GET", "audit", None, False, 403, "forbidden"),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "as_admin", "status", "code"),
    REFUSED,
    ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in REFUSED],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    env: Settings,
    client: TestClient,
    case: str,
    method: str,
    path: str,
    body: Any,
    as_admin: bool,
    status: int,
    code: str,
) -> None:
    _, admin = _admin(env)
    user = make_user(env.database_url or "")
    _put(client, "plans/pro", {"backend": "appetize"}, admin)  # something to keep
    before = _stored(env)
    path = path.replace("USER", str(user.id)).replace("NOBODY", str(uuid.uuid4()))
    headers = admin if as_admin else user.headers
    answer = client.request(method, f"{FLAGS}/{path}", json=body, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert answer.json()["message"]
    assert _stored(env) == before


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (["--percentage", "101"], {"percentage": 101}),
        (["--user", "12345", "new"], None),
        (["--user", "USER", "fly"], {"backend": "fly"}),
    ],
)
def test_the_cli_refuses_what_the_api_refuses_with_the_same_words(
    env: Settings,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    body: Any,
) -> None:
    _, admin = _admin(env)
    user = make_user(env.database_url or "")
    args = [a.replace("USER", str(user.id)) for a in args]
    before = _stored(env)
    assert cli.main(["flags", "set", *args]) == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith("preview-orchestrator: refused (")
    if body is not None:
        path = "global" if "percentage" in body else f"users/{user.id}"
        answer = client.put(f"{FLAGS}/{path}", json=body, headers=admin).json()
        assert said == f"preview-orchestrator: refused ({answer['error']}): {answer['message']}"
    assert _stored(env) == before


def test_the_cli_shows_the_flags_and_the_audit(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["flags", "set", "--kill-switch", "on", "--plan", "pro", "new"]) == 0
    capsys.readouterr()
    assert cli.main(["flags", "show"]) == 0
    shown = capsys.readouterr().out
    assert "kill switch  ON" in shown and "plan     pro" in shown
    assert cli.main(["flags", "audit", "--flag", "killSwitch"]) == 0
    audit = capsys.readouterr().out.strip().splitlines()
    assert len(audit) == 1 and audit[0].endswith("killSwitch: false -> true")


@pytest.fixture
async def stores(env: Settings) -> AsyncIterator[tuple[Any, Redis]]:
    db = await open_pool(env.database_url or "", min_size=1, max_size=2)
    redis: Redis = Redis.from_url(env.redis_url or "", decode_responses=True)
    try:
        yield db, redis
    finally:
        await redis.aclose()
        await db.close()


def _set_kill_switch(database_url: str, on: bool) -> None:
    # Straight into Postgres, as a change whose announcement was lost.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE preview_rollout SET kill_switch = %s", (on,))


async def test_the_cache_drops_its_flags_as_soon_as_a_change_is_announced(
    env: Settings, stores: tuple[Any, Redis]
) -> None:
    db, redis = stores

    async def load() -> FlagSet:
        async with db.connection() as conn:
            return flag_set(await load_flags(conn))

    cache = FlagCache(load, redis, CHANNEL, ttl=3600)
    await cache.start()
    try:
        assert (await cache.get()).kill_switch is False
        await asyncio.to_thread(_set_kill_switch, env.database_url or "", True)
        assert (await cache.get()).kill_switch is False  # cached: the TTL has not passed
        assert await announce_change(redis, CHANNEL)
        async with asyncio.timeout(2):
            while not (await cache.get()).kill_switch:
                await asyncio.sleep(0.01)
    finally:
        await cache.stop()


async def test_without_an_announcement_the_ttl_bounds_how_old_the_flags_are(
    env: Settings, stores: tuple[Any, Redis]
) -> None:
    db, redis = stores
    now = [0.0]
    loads = 0

    async def load() -> FlagSet:
        nonlocal loads
        loads += 1
        async with db.connection() as conn:
            return flag_set(await load_flags(conn))

    cache = FlagCache(load, redis, CHANNEL, ttl=5.0, clock=lambda: now[0])
    await cache.start()
    try:
        assert (await cache.get()).kill_switch is False
        await asyncio.to_thread(_set_kill_switch, env.database_url or "", True)
        now[0] = 4.99
        assert (await cache.get()).kill_switch is False
        now[0] = 5.0
        assert (await cache.get()).kill_switch is True
        assert loads == 2  # one read per TTL, however many gets
    finally:
        await cache.stop()
