"""Automatic fallback to Appetize and the Appetize arm's reports, on real Postgres and Redis.

A session that cannot start (the pool exhausted with no on-demand boot, repeated failures)
answers 503 with a `fallback` member and records the fallback, after which
`GET /api/preview/backend` says `appetize` / `fallback`; a quota refusal is not a fallback.
A boot that failed in the worker records one too and the editor's `ended` frame carries it.
The panel's stage reports are taken in order from the owner only; hostile reports get a clear
4xx and change nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings, load_settings
from sql.fallbacks import Fallback, recent_fallbacks
from sql.sessions import end_session, record_session
from sql.states import SessionStatus
from tests.conftest import User, fill_pool, make_user, new_session
from tests.integration.test_rollout_flags import reset_flags

SESSIONS = "/api/preview/sessions"
BACKEND = "/api/preview/backend"
ARM = "/api/preview/appetize-sessions"
EMBED_BASE = "http://127.0.0.1:9/embed/"
APPETIZE = {
    "publicKey": "pk_fallback_1",
    "platform": "ios",
    "device": "iphone15pro",
    "osVersion": "17.0",
    "scale": "75",
}


def _settings(settings: Settings, **changes: Any) -> Settings:
    return load_settings(**{**settings.model_dump(), **changes})


@pytest.fixture
def db(settings: Settings) -> str:
    assert settings.database_url is not None
    reset_flags(settings.database_url)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE appetize_arm_sessions CASCADE")
    return settings.database_url


@pytest.fixture
def client(settings: Settings, db: str) -> Iterator[TestClient]:
    """No on-demand boots: an empty pool is a 503 at once."""
    tuned = _settings(
        settings,
        preview_ondemand_max=0,
        preview_appetize_embed_url=EMBED_BASE,
        preview_fallback_failures=3,
    )
    with TestClient(create_app(tuned)) as test_client:
        yield test_client


def with_appetize(db: str, user: User, settings: Mapping[str, str | None] = APPETIZE) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO appetize_previews (project_id, public_key, platform, device,
                   os_version, scale) VALUES (%s, %s, %s, %s, %s, %s)""",
            (
                user.project_id,
                settings["publicKey"],
                settings["platform"],
                settings["device"],
                settings["osVersion"],
                settings["scale"],
            ),
        )


def fallbacks(db: str, user: User) -> list[Fallback]:
    async def read() -> list[Fallback]:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            return await recent_fallbacks(conn, user.project_id)

    return asyncio.run(read())


def backend(client: TestClient, user: User) -> dict[str, Any]:
    answer = client.get(BACKEND, params={"projectId": str(user.project_id)}, headers=user.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def lease(client: TestClient, user: User) -> Any:
    return client.post(SESSIONS, json={"projectId": str(user.project_id)}, headers=user.headers)


def failed_sessions(db: str, user: User, count: int, reason: str = "machine_lost") -> None:
    """`count` sessions of the user's project that started and failed."""

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            for _ in range(count):
                new = new_session(uuid.uuid4(), user.id, user.project_id)
                await record_session(conn, new, max_concurrent=100, machine_id=None, epoch=None)
                await end_session(conn, new.id, reason=reason, status=SessionStatus.FAILED)

    asyncio.run(write())


# ---- the new system's start failures ---------------------------------------------------------


def test_an_exhausted_pool_falls_back_to_appetize_and_is_recorded(
    client: TestClient, db: str
) -> None:
    user = make_user(db)
    with_appetize(db, user)
    assert backend(client, user)["reason"] != "fallback"

    answer = lease(client, user)

    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["error"] == "pool_exhausted"
    assert body["fallback"] == {
        "backend": "appetize",
        "reason": "pool_exhausted",
        "appetize": APPETIZE,
    }
    recorded = fallbacks(db, user)
    assert [(f.reason, f.user_id, f.session_id) for f in recorded] == [
        ("pool_exhausted", user.id, None)
    ]
    assert recorded[0].detail == {"template": "react-web", "region": "local"}
    decided = backend(client, user)
    assert (decided["backend"], decided["reason"]) == ("appetize", "fallback")
    assert decided["appetize"] == APPETIZE
    # Another editor of another project is untouched by this one's fallback.
    other = make_user(db)
    assert backend(client, other)["reason"] != "fallback"


def test_a_project_without_appetize_settings_still_falls_back_with_null_settings(
    client: TestClient, db: str
) -> None:
    user = make_user(db)
    answer = lease(client, user)
    assert answer.status_code == 503
    assert answer.json()["fallback"] == {
        "backend": "appetize",
        "reason": "pool_exhausted",
        "appetize": None,
    }
    assert len(fallbacks(db, user)) == 1


@pytest.mark.parametrize("refusal", ["quota_exceeded", "rate_limited"])
def test_a_quota_refusal_is_not_a_fallback(client: TestClient, db: str, refusal: str) -> None:
    fill_pool(3)
    if refusal == "quota_exceeded":
        user = make_user(db, max_concurrent=1)
    else:
        user = make_user(db, per_minute=1, burst=1)
    with_appetize(db, user)
    assert lease(client, user).status_code == 201
    if refusal == "rate_limited":
        # The first session ended: only the creation rate stands in the way now.
        first = client.get(SESSIONS, headers=user.headers).json()["sessions"][0]["id"]
        assert client.delete(f"{SESSIONS}/{first}", headers=user.headers).status_code == 204

    answer = lease(client, user)

    assert answer.status_code == 429, answer.text
    assert answer.json()["error"] == refusal
    assert "fallback" not in answer.json()
    assert fallbacks(db, user) == []
    assert backend(client, user)["reason"] != "fallback"


def test_repeated_failures_fall_back_before_a_lease_and_a_good_session_resets_them(
    client: TestClient, db: str
) -> None:
    fill_pool(1)
    user = make_user(db)
    with_appetize(db, user)
    failed_sessions(db, user, 2)
    failed_sessions(db, user, 3, reason="abandoned")  # the client left: not the system's fault
    # Two failures in a row are under the threshold (3): the lease goes ahead.
    first = lease(client, user)
    assert first.status_code == 201, first.text
    assert (
        client.delete(f"{SESSIONS}/{first.json()['id']}", headers=user.headers).status_code == 204
    )
    # That session ended well: the count starts again, and three new failures are needed.
    failed_sessions(db, user, 2)
    assert fallbacks(db, user) == []
    failed_sessions(db, user, 1)

    answer = lease(client, user)

    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "repeated_failures"
    assert answer.json()["fallback"]["reason"] == "repeated_failures"
    assert answer.json()["fallback"]["appetize"] == APPETIZE
    recorded = fallbacks(db, user)
    assert [(f.reason, f.detail) for f in recorded] == [("repeated_failures", {"failures": 3})]
    assert (backend(client, user)["backend"], backend(client, user)["reason"]) == (
        "appetize",
        "fallback",
    )
    # No machine was taken for the refused lease.
    with psycopg.connect(db) as conn:
        live = conn.execute(
            "SELECT count(*) FROM preview_sessions WHERE user_id = %s AND status = 'active'",
            (user.id,),
        ).fetchone()
    assert live == (0,)


# ---- the Appetize arm's reports --------------------------------------------------------------


def open_arm(client: TestClient, user: User, reason: str = "fallback") -> dict[str, Any]:
    answer = client.post(
        ARM, json={"projectId": str(user.project_id), "reason": reason}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def arm_events(db: str, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT stage, detail FROM appetize_arm_events WHERE session_id = %s ORDER BY at, id",
            (session_id,),
        ).fetchall()
    return [(stage, detail) for stage, detail in rows]


def report(client: TestClient, user: User, session_id: str, body: Any, **kw: Any) -> Any:
    return client.post(f"{ARM}/{session_id}/events", json=body, headers=user.headers, **kw)


def test_an_arm_session_gets_the_embed_url_and_its_stages_in_order(
    client: TestClient, db: str
) -> None:
    user = make_user(db)
    with_appetize(db, user)
    arm = open_arm(client, user)
    assert arm["appetize"] == APPETIZE
    url = urlsplit(arm["embedUrl"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{EMBED_BASE}pk_fallback_1"
    assert parse_qs(url.query) == {
        "device": ["iphone15pro"],
        "osVersion": ["17.0"],
        "scale": ["75"],
        "autoplay": ["true"],
        "xdocMsg": ["true"],
    }
    session_id = arm["id"]
    now = datetime.now(UTC)
    steps: list[tuple[dict[str, Any], int]] = [
        ({"stage": "embed_loaded"}, 201),
        ({"stage": "first_frame", "detail": {"event": "firstFrameReceived"}}, 201),
        ({"stage": "first_frame"}, 200),  # a second report: the first stands
        ({"stage": "edit_visible", "detail": {"latencyMs": 4200.5}}, 201),
        ({"stage": "edit_visible", "detail": {"latencyMs": 3900}}, 201),
        ({"stage": "error", "detail": {"message": "the embed said: userError"}}, 201),
        ({"stage": "ended"}, 201),
    ]
    for step, (body, status) in enumerate(steps):
        # The panel's own clock orders its stages.
        body.setdefault("at", (now + timedelta(milliseconds=100 * step)).isoformat())
        answer = report(client, user, session_id, body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json() == {"stage": body["stage"], "recorded": status == 201}

    assert arm_events(db, session_id) == [
        ("requested", {}),
        ("embed_loaded", {}),
        ("first_frame", {"event": "firstFrameReceived"}),
        ("edit_visible", {"latencyMs": 4200.5}),
        ("edit_visible", {"latencyMs": 3900}),
        ("error", {"message": "the embed said: userError"}),
        ("ended", {}),
    ]
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT reason, ended_at IS NOT NULL FROM appetize_arm_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
    assert row == ("fallback", True)
    # Once ended, nothing more is taken.
    late = report(client, user, session_id, {"stage": "first_frame"})
    assert late.status_code == 409 and late.json()["error"] == "session_ended"


def test_an_arm_session_needs_the_project_and_its_appetize_build(
    client: TestClient, db: str
) -> None:
    owner, stranger, bare = make_user(db), make_user(db), make_user(db)
    with_appetize(db, owner)
    refused = client.post(
        ARM, json={"projectId": str(owner.project_id), "reason": "flag"}, headers=stranger.headers
    )
    assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    no_build = client.post(
        ARM, json={"projectId": str(bare.project_id), "reason": "flag"}, headers=bare.headers
    )
    assert no_build.status_code == 404 and no_build.json()["error"] == "no_appetize_build"
    bad_reason = client.post(
        ARM, json={"projectId": str(owner.project_id), "reason": "whim"}, headers=owner.headers
    )
    assert bad_reason.status_code == 400
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM appetize_arm_sessions").fetchone() == (0,)


HOSTILE_REPORTS: list[tuple[str, Any, int, str]] = [
    ("unknown stage", {"stage": "teleported"}, 400, "invalid_body"),
    ("unknown field", {"stage": "ended", "sql": "DROP TABLE x"}, 400, "invalid_body"),
    (
        "oversized message",
        {"stage": "error", "detail": {"message": "x" * 501}},
        400,
        "invalid_body",
    ),
    ("error without message", {"stage": "error"}, 400, "invalid_body"),
    ("edit without latency", {"stage": "edit_visible"}, 400, "invalid_body"),
    (
        "negative latency",
        {"stage": "edit_visible", "detail": {"latencyMs": -1}},
        400,
        "invalid_body",
    ),
    (
        "latency as text",
        {"stage": "edit_visible", "detail": {"latencyMs": "5"}},
        400,
        "invalid_body",
    ),
    (
        "event with markup",
        {"stage": "first_frame", "detail": {"event": "<b>"}},
        400,
        "invalid_body",
    ),
    ("time without offset", {"stage": "ended", "at": "2030-01-01T00:00:00"}, 400, "invalid_body"),
    ("time as number", {"stage": "ended", "at": 1}, 400, "invalid_body"),
    (
        "time in the past",
        {"stage": "ended", "at": "2001-01-01T00:00:00+00:00"},
        400,
        "at_out_of_range",
    ),
    (
        "time in the future",
        {"stage": "ended", "at": "2999-01-01T00:00:00+00:00"},
        400,
        "at_out_of_range",
    ),
    ("not an object", ["ended"], 400, "invalid_body"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [case[1:] for case in HOSTILE_REPORTS],
    ids=[case[0] for case in HOSTILE_REPORTS],
)
def test_hostile_reports_are_refused_and_change_nothing(
    client: TestClient, db: str, body: Any, status: int, code: str
) -> None:
    user = make_user(db)
    with_appetize(db, user)
    session_id = open_arm(client, user)["id"]
    before = arm_events(db, session_id)

    answer = report(client, user, session_id, body)

    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code
    assert arm_events(db, session_id) == before


def test_reports_on_another_users_or_a_made_up_session_or_malformed_are_refused(
    client: TestClient, db: str
) -> None:
    owner, other = make_user(db), make_user(db)
    with_appetize(db, owner)
    session_id = open_arm(client, owner)["id"]
    before = arm_events(db, session_id)

    theirs = report(client, other, session_id, {"stage": "ended"})
    assert theirs.status_code == 404 and theirs.json()["error"] == "not_found"
    made_up = report(client, owner, str(uuid.uuid4()), {"stage": "ended"})
    assert made_up.status_code == 404
    not_an_id = report(client, owner, "1 OR 1=1", {"stage": "ended"})
    assert not_an_id.status_code == 400 and not_an_id.json()["error"] == "invalid_id"
    malformed = client.post(
        f"{ARM}/{session_id}/events",
        content=b'{"stage": "ended"',
        headers={**owner.headers, "content-type": "application/json"},
    )
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed_json"
    null = client.post(
        f"{ARM}/{session_id}/events",
        content=b"null",
        headers={**owner.headers, "content-type": "application/json"},
    )
    assert null.status_code == 400 and null.json()["error"] == "invalid_body"
    not_json = client.post(
        f"{ARM}/{session_id}/events",
        content=b"stage=ended",
        headers={**owner.headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert not_json.status_code == 415
    oversized = report(
        client, owner, session_id, {"stage": "error", "detail": {"message": "x" * 5000}}
    )
    assert oversized.status_code == 413
    anonymous = client.post(f"{ARM}/{session_id}/events", json={"stage": "ended"})
    assert anonymous.status_code == 401

    assert arm_events(db, session_id) == before
    with psycopg.connect(db) as conn:
        ended = conn.execute(
            "SELECT ended_at FROM appetize_arm_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    assert ended == (None,)


@pytest.mark.parametrize(
    ("reason", "fallback"), [("boot_failed", True), ("wake_failed", True), ("machine_lost", False)]
)
def test_the_socket_of_a_session_that_never_started_says_to_show_appetize(
    client: TestClient, db: str, reason: str, fallback: bool
) -> None:
    fill_pool(1)
    user = make_user(db)
    with_appetize(db, user)
    session = lease(client, user).json()

    async def fail() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            ended = await end_session(
                conn, uuid.UUID(session["id"]), reason=reason, status=SessionStatus.FAILED
            )
            assert ended is not None

    asyncio.run(fail())
    path = f"{SESSIONS}/{session['id']}/ws?token={session['token']}"
    with client.websocket_connect(path) as socket:
        frame = socket.receive_json()

    assert (frame["type"], frame["reason"], frame["status"]) == ("ended", reason, "failed")
    if fallback:
        assert frame["fallback"] == {"backend": "appetize", "reason": reason, "appetize": APPETIZE}
    else:  # a session that ran and then failed is not a failed start
        assert "fallback" not in frame
