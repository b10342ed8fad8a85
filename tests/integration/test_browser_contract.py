"""The browser contract on the server side (docs/embedding.md): CORS on /api/*, the device
catalogue, token refresh and share links, the preview cookie for cross-site embeds, editor
frames as activity, `idleWarning` before an idle end, and `ended` pushed on every end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.preview_request import redirect_target
from app.server import create_app
from app.session_tokens import TokenScope, mint_session_token, verify_session_token
from app.settings import Settings, load_settings
from pool.edits.edit_log import Change, EditLog, Ended, announce_end
from pool.providers.local import LocalProvider
from pool.services.context import PoolServices
from pool.services.metrics import make_metrics
from pool.services.reaper import reap
from pool.store.inventory import Inventory
from pool.store.leasing import LeaseBroker
from sql.database import open_pool
from tests.conftest import REDIS_URL, TOKEN_SECRET, User, fill_pool, make_user
from tests.integration.live import live_server
from tests.integration.test_gateway import Server, receive_until, send

EDITOR = "https://editor.example"


@pytest.fixture
def browser_settings(settings: Settings) -> Settings:
    return load_settings(
        **{
            **settings.model_dump(),
            "preview_allowed_origins": EDITOR,
            "preview_activity_flush_seconds": 0.05,
        }
    )


@pytest.fixture
def client(browser_settings: Settings) -> Iterator[TestClient]:
    fill_pool(3)
    with TestClient(create_app(browser_settings), follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def user(browser_settings: Settings) -> User:
    return make_user(browser_settings.database_url or "")


def lease(client: TestClient, user: User, **body: Any) -> httpx.Response:
    # Annotated: starlette types TestClient against httpx2, which is not installed here.
    response: httpx.Response = client.post(
        "/api/preview/sessions",
        json={"projectId": str(user.project_id), **body},
        headers=user.headers,
    )
    return response


def _count_sessions(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM preview_sessions").fetchone()
    assert row is not None
    return int(row[0])


# -- CORS ------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_passes(client: TestClient) -> None:
    answer = client.options(
        "/api/preview/sessions",
        headers={
            "origin": EDITOR,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == EDITOR
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in answer.headers  # bearer tokens only


def test_a_preflight_from_another_origin_is_refused(client: TestClient) -> None:
    answer = client.options(
        "/api/preview/sessions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers


def test_answers_to_an_allowed_origin_expose_retry_after_and_the_request_id(
    client: TestClient, user: User
) -> None:
    answer = client.post(
        "/api/preview/sessions",
        json={"projectId": str(user.project_id)},
        headers={**user.headers, "origin": EDITOR},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["access-control-allow-origin"] == EDITOR
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed and "x-request-id" in exposed
    assert answer.headers["x-request-id"]
    # Not for another origin, and never outside /api/.
    other = client.get("/api/preview/devices", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert (
        "access-control-allow-origin"
        not in client.get("/healthz", headers={"origin": EDITOR}).headers
    )


# -- devices ---------------------------------------------------------------------------------


def test_the_device_catalogue(client: TestClient) -> None:
    answer = client.get("/api/preview/devices")
    assert answer.status_code == 200
    devices = answer.json()["devices"]
    assert {d["platform"] for d in devices} == {"web", "ios", "android"}
    assert {d["frame"] for d in devices} == {"phone", "tablet", "desktop"}
    for device in devices:
        assert set(device) == {"id", "name", "platform", "width", "height", "pixelRatio", "frame"}
        assert device["width"] > 0 and device["height"] > 0 and device["pixelRatio"] >= 1
    assert len({d["id"] for d in devices}) == len(devices)


def test_a_session_names_its_device(client: TestClient, user: User) -> None:
    named = lease(client, user, device="pixel-8")
    assert named.status_code == 201, named.text
    assert (named.json()["device"], named.json()["deviceType"]) == ("pixel-8", "android")
    by_platform = lease(client, user, deviceType="ios")
    assert (by_platform.json()["device"], by_platform.json()["deviceType"]) == ("iphone-15", "ios")
    default = lease(client, user)
    assert (default.json()["device"], default.json()["deviceType"]) == ("laptop", "web")
    fetched = client.get(f"/api/preview/sessions/{named.json()['id']}", headers=user.headers)
    assert fetched.json()["device"] == "pixel-8"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"device": "nokia-3310"}, "unknown_device"),
        ({"device": "pixel-8", "deviceType": "ios"}, "unknown_device"),
        ({"device": "../../etc"}, "invalid_body"),
        ({"device": 7}, "invalid_body"),
        ({"device": "x" * 200}, "invalid_body"),
    ],
)
def test_an_unknown_device_is_400_and_changes_nothing(
    client: TestClient, user: User, browser_settings: Settings, body: dict[str, Any], code: str
) -> None:
    pool_before = client.get("/api/preview/devices")  # warm the app
    assert pool_before.status_code == 200
    answer = lease(client, user, **body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code
    assert _count_sessions(browser_settings.database_url or "") == 0


# -- tokens ----------------------------------------------------------------------------------


def test_token_refresh_gives_a_fresh_token_for_the_caller_only(
    client: TestClient, user: User, browser_settings: Settings
) -> None:
    session = lease(client, user).json()
    url = f"/api/preview/sessions/{session['id']}/token"
    fresh = client.post(url, headers=user.headers)
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert set(body) == {"token", "tokenExpiresAt"}
    grant = verify_session_token(
        TOKEN_SECRET.encode(), body["token"], uuid.UUID(session["id"]), time.time()
    )
    assert grant.scope is TokenScope.EDITOR and grant.expires_at > time.time() + 60

    stranger = make_user(browser_settings.database_url or "")
    assert client.post(url, headers=stranger.headers).status_code == 404
    assert client.post(url).status_code == 401
    assert client.post("/api/preview/sessions/nope/token", headers=user.headers).status_code == 400
    client.delete(f"/api/preview/sessions/{session['id']}", headers=user.headers)
    ended = client.post(url, headers=user.headers)
    assert (ended.status_code, ended.json()["error"]) == (409, "session_ended")


def test_a_share_link_opens_the_preview_only(client: TestClient, user: User) -> None:
    session = lease(client, user).json()
    shared = client.post(f"/api/preview/sessions/{session['id']}/share", headers=user.headers)
    assert shared.status_code == 200, shared.text
    url = shared.json()["url"]
    assert url.startswith(session["previewOrigin"] + "/?token=")
    token = url.split("token=", 1)[1]
    sid = uuid.UUID(session["id"])
    all_scopes = frozenset(TokenScope)
    grant = verify_session_token(TOKEN_SECRET.encode(), token, sid, time.time(), all_scopes)
    assert grant.scope is TokenScope.SHARE and grant.expires_at <= time.time() + 301
    with pytest.raises(ValueError):  # never the editor socket
        verify_session_token(TOKEN_SECRET.encode(), token, sid, time.time())

    host = {"host": session["previewOrigin"].split("://", 1)[1]}
    exchanged = client.get(f"/?token={token}", headers=host)
    assert exchanged.status_code == 302 and exchanged.headers["location"] == "/"
    cookie_token = exchanged.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    cookie_grant = verify_session_token(
        TOKEN_SECRET.encode(), cookie_token, sid, time.time(), all_scopes
    )
    # The phone keeps an ordinary lifetime, with a token that cannot edit.
    assert cookie_grant.scope is TokenScope.PREVIEW
    assert cookie_grant.expires_at > grant.expires_at
    # A share token is for the first load only, never a cookie.
    client.cookies.set("preview_token", token)
    assert client.get("/", headers=host).status_code == 403
    client.cookies.clear()


def test_the_preview_cookie_works_in_a_cross_site_iframe(client: TestClient, user: User) -> None:
    session = lease(client, user).json()
    host = {"host": session["previewOrigin"].split("://", 1)[1]}
    first = client.get(f"/?token={session['token']}", headers=host)
    assert first.status_code == 302
    attributes = [a.strip() for a in first.headers["set-cookie"].split(";")]
    # SameSite=None (a Lax cookie is not sent to a cross-site iframe) needs Secure; Partitioned
    # keeps it per top-level site, which survives third-party cookie blocking. Always Secure,
    # whatever the request's scheme (Chromium counts *.localhost as secure).
    assert {"HttpOnly", "SameSite=None", "Secure", "Partitioned", "Path=/"} <= set(attributes)
    cookie_token = attributes[0].split("=", 1)[1]
    assert cookie_token != session["token"]  # the cookie never holds the editor's token
    grant = verify_session_token(
        TOKEN_SECRET.encode(),
        cookie_token,
        uuid.UUID(session["id"]),
        time.time(),
        frozenset(TokenScope),
    )
    assert grant.scope is TokenScope.PREVIEW


def test_the_token_path_sets_a_fresh_cookie_without_a_redirect(
    client: TestClient, user: User
) -> None:
    session = lease(client, user).json()
    host = {"host": session["previewOrigin"].split("://", 1)[1]}
    fresh = client.post(f"/api/preview/sessions/{session['id']}/token", headers=user.headers)
    token = fresh.json()["token"]
    answer = client.get(f"/__preview/token?token={token}", headers=host)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["set-cookie"].startswith("preview_token=")
    assert "no-store" in answer.headers["cache-control"]
    assert client.get("/__preview/token", headers=host).status_code == 401
    assert client.get("/__preview/token?token=forged.x", headers=host).status_code == 403
    other = mint_session_token(TOKEN_SECRET.encode(), uuid.uuid4(), int(time.time()) + 60)
    assert client.get(f"/__preview/token?token={other}", headers=host).status_code == 403


def test_the_redirect_stays_on_the_preview_origin(client: TestClient, user: User) -> None:
    session = lease(client, user).json()
    host = {"host": session["previewOrigin"].split("://", 1)[1]}
    answer = client.get(f"/caf%C3%A9?token={session['token']}&x=1", headers=host)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/caf%C3%A9?x=1"
    # A path the test client cannot send as such: the pure function that builds the target
    # (tests/security/test_preview_proxy.py sends such paths to a real server).
    scope = {"path": "", "raw_path": b"//evil.example/x", "query_string": b"token=t"}
    assert redirect_target(scope, "token") == "/evil.example/x"
    scope = {"path": "", "raw_path": "/a b/\u00e9".encode(), "query_string": b"q=1&token=t"}
    assert redirect_target(scope, "token") == "/a%20b/%C3%A9?q=1"


# -- activity, warnings, ends (a real server: sockets) -----------------------------------------


@pytest.fixture
def live(browser_settings: Settings) -> Iterator[tuple[Server, dict[str, Any], User]]:
    fill_pool(1)
    user = make_user(browser_settings.database_url or "")
    with live_server(browser_settings) as host:
        response = httpx.post(
            f"http://{host}/api/preview/sessions",
            json={"projectId": str(user.project_id)},
            headers=user.headers,
        )
        assert response.status_code == 201, response.text
        yield Server(host), response.json(), user


def _last_activity(database_url: str, session_id: str) -> float:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM last_activity) FROM preview_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
    assert row is not None
    return float(row[0])


def _age_session(database_url: str, session_id: str, idle_seconds: int, age: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE preview_sessions SET idle_timeout_seconds = %s, "
            "last_activity = now() - make_interval(secs => %s) WHERE id = %s",
            (idle_seconds, age, session_id),
        )


def _reap(settings: Settings) -> Any:
    async def run() -> Any:
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        db = await open_pool(settings.database_url or "", min_size=1, max_size=2)
        queued: list[tuple[str, int]] = []

        async def enqueue(machine: str, epoch: int) -> None:
            queued.append((machine, epoch))

        # The reaper never touches a machine, but the services it is handed carry a provider.
        provider = LocalProvider(settings.preview_data_dir / "reaper", isolate=False)
        try:
            broker = LeaseBroker(redis, pending_ttl_ms=10_000, ondemand_max=4)
            services = PoolServices(
                db, broker, Inventory(redis), provider, enqueue, make_metrics(None, 8125, "t")
            )
            return await reap(services, idle_warning_seconds=30)
        finally:
            await provider.aclose()
            await db.close()
            await redis.aclose()

    return asyncio.run(run())


def test_every_editor_frame_is_activity(live: Any, browser_settings: Settings) -> None:
    server, session, _ = live
    database_url = browser_settings.database_url or ""
    _age_session(database_url, session["id"], 900, 600)
    before = _last_activity(database_url, session["id"])
    with server.editor(session) as editor:
        send(editor, "ping")
        receive_until(editor, "pong")
        deadline = time.monotonic() + 5
        while _last_activity(database_url, session["id"]) <= before:
            assert time.monotonic() < deadline, "a ping did not count as activity"
            time.sleep(0.05)


def test_idle_warning_comes_before_the_end_and_a_frame_keeps_the_session(
    live: Any, browser_settings: Settings
) -> None:
    server, session, _ = live
    database_url = browser_settings.database_url or ""
    with server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        time.sleep(0.2)  # the hello's activity write lands first
        # 100 s of idle timeout, 80 s idle: inside the warning window (30 s), not yet due.
        _age_session(database_url, session["id"], 100, 80)
        assert _reap(browser_settings).warned == 1
        warning = receive_until(editor, "idleWarning")
        assert 15 <= warning["secondsLeft"] <= 20
        assert _reap(browser_settings).warned == 0  # once per idle stretch
        send(editor, "ping")  # the person is still there
        receive_until(editor, "pong")
        deadline = time.monotonic() + 5
        while time.time() - _last_activity(database_url, session["id"]) > 10:
            assert time.monotonic() < deadline, "the frame after the warning did not count"
            time.sleep(0.05)
        report = _reap(browser_settings)
        assert (report.ended, report.warned) == (0, 0)

        # Then idle for good: the reaper ends it, and the editor hears why.
        _age_session(database_url, session["id"], 100, 120)
        assert _reap(browser_settings).ended == 1
        ended = receive_until(editor, "ended")
        assert (ended["reason"], ended["status"]) == ("idle_timeout", "ended")
        with pytest.raises(ConnectionClosed) as closed:
            editor.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


def test_delete_pushes_ended_and_a_later_patch_is_refused(live: Any) -> None:
    server, session, user = live
    with server.editor(session) as editor, server.editor(session) as second:
        for socket in (editor, second):
            send(socket, "hello", lastSeq=0)
            receive_until(socket, "welcome")
        send(editor, "patch", seq=1, changes=[{"path": "src/App.jsx", "content": "v1"}])
        assert receive_until(editor, "ack")["seq"] == 1
        deleted = httpx.delete(
            f"http://{server.host}/api/preview/sessions/{session['id']}", headers=user.headers
        )
        assert deleted.status_code == 204
        for socket in (editor, second):
            ended = receive_until(socket, "ended")
            assert (ended["reason"], ended["status"]) == ("deleted", "ended")
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000

    # A socket opened afterwards is told at once, and never acks anything.
    with server.editor(session) as late:
        told = json_frames_until_closed(late)
    assert [f["type"] for f in told] == ["ended"] and told[0]["reason"] == "deleted"


def json_frames_until_closed(ws: Any) -> list[dict[str, Any]]:
    frames = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(json.loads(ws.recv(timeout=10)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    return frames


def test_a_patch_racing_the_end_is_refused_not_acked(browser_settings: Settings) -> None:
    """The end is marked in Redis in the same step that tells the sockets, and the append
    script checks that mark: a patch that arrives after it is refused, resends included."""

    async def run() -> None:
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            edits = EditLog(redis)
            session = str(uuid.uuid4())
            change = [Change("src/App.jsx", "v1")]
            first = await edits.append(session, 1, change)
            assert first.seq == 1  # type: ignore[union-attr]
            await announce_end(redis, session, "deleted", "ended")
            for seq in (1, 2):  # a resend of an acked patch, and a new one
                outcome = await edits.append(session, seq, change)
                assert outcome == Ended("deleted")
            assert await edits.head(session) == 1
            assert await edits.ended(session) == ("deleted", "ended")
        finally:
            await redis.aclose()

    asyncio.run(run())


def test_a_share_token_cannot_open_the_editor_socket(live: Any) -> None:
    server, session, _ = live
    share = mint_session_token(
        TOKEN_SECRET.encode(),
        uuid.UUID(session["id"]),
        int(time.time()) + 60,
        TokenScope.SHARE,
    )
    preview = mint_session_token(
        TOKEN_SECRET.encode(),
        uuid.UUID(session["id"]),
        int(time.time()) + 60,
        TokenScope.PREVIEW,
    )
    for token in (share, preview):
        with pytest.raises(InvalidStatus) as refused:
            server.editor(session, token=token).__enter__()
        assert refused.value.response.status_code == 403
