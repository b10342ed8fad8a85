"""The realtime gateway on a real uvicorn server: an editor socket and a (simulated) agent
socket meeting through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from app.settings import Settings
from pool.store.inventory import Inventory
from tests.conftest import REDIS_URL, fill_pool, make_user
from tests.integration.live import live_server

MACHINE_TOKEN = "machine-token-for-tests"


def _set_tokens(machine_ids: list[str], token: str = MACHINE_TOKEN) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            for machine_id in machine_ids:
                await Inventory(client).set_token(machine_id, token)
        finally:
            await client.aclose()

    asyncio.run(run())


def send(ws: Any, kind: str, **fields: Any) -> None:
    ws.send(json.dumps({"v": 1, "type": kind, **fields}))


def receive_until(ws: Any, kind: str, limit: int = 20) -> dict[str, Any]:
    for _ in range(limit):
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind} frame within {limit} frames")


@dataclass
class Server:
    host: str

    def editor(self, session: dict[str, Any], token: str | None = None, **kw: Any) -> Any:
        return connect(
            f"ws://{self.host}/api/preview/sessions/{session['id']}/ws"
            f"?token={token or session['token']}",
            **kw,
        )

    def agent(self, machine: str, token: str = MACHINE_TOKEN) -> Any:
        return connect(
            f"ws://{self.host}/api/sandbox/ws",
            additional_headers={"authorization": f"Bearer {token}", "x-machine-id": machine},
        )


@pytest.fixture
def leased(settings: Settings) -> Iterator[tuple[Server, dict[str, Any], str]]:
    with leased_session(settings) as running:
        yield running


@contextlib.contextmanager
def leased_session(settings: Settings) -> Iterator[tuple[Server, dict[str, Any], str]]:
    """A live server with `settings` and a session leased on its one (simulated) machine."""
    machines = fill_pool(1)
    _set_tokens(machines)
    user = make_user(settings.database_url or "")
    with live_server(settings) as host:
        response = httpx.post(
            f"http://{host}/api/preview/sessions",
            json={"projectId": str(user.project_id)},
            headers=user.headers,
        )
        assert response.status_code == 201, response.text
        yield Server(host), response.json(), machines[0]


def test_an_edit_reaches_the_agent_and_applied_reaches_the_editor(leased: Any) -> None:
    server, session, machine = leased
    with server.agent(machine) as agent:
        send(agent, "hello", machineId=machine, session=None, appliedSeq=0)
        assert receive_until(agent, "assign")["session"] == session["id"]
        with server.editor(session) as editor:
            send(editor, "hello", lastSeq=0)
            welcome = receive_until(editor, "welcome")
            assert (welcome["head"], welcome["applied"]) == (0, 0)
            send(editor, "patch", seq=1, changes=[{"path": "src/App.jsx", "content": "v1"}])
            assert receive_until(editor, "ack")["seq"] == 1
            patch = receive_until(agent, "patch")
            assert patch["seq"] == 1 and patch["changes"][0]["content"] == "v1"
            send(agent, "applied", seq=1)
            assert receive_until(editor, "applied")["seq"] == 1
            # A resend of the same patch is acknowledged again, not appended twice.
            send(editor, "patch", seq=1, changes=[{"path": "src/App.jsx", "content": "v1"}])
            assert receive_until(editor, "ack")["seq"] == 1
            # Another patch at a used seq conflicts.
            send(editor, "patch", seq=1, changes=[{"path": "src/App.jsx", "content": "other"}])
            error = receive_until(editor, "error")
            assert (error["code"], error["head"]) == ("seq_conflict", 1)
            send(
                agent,
                "buildError",
                message="Unexpected token",
                file="src/App.jsx",
                line=3,
                column=7,
            )
            assert receive_until(editor, "buildError")["line"] == 3


def test_what_an_agent_applied_unreported_reaches_the_editors_on_its_hello(
    leased: Any,
) -> None:
    # The agent wrote patches 1 and 2, but no `applied` got through (its socket dropped, or
    # Redis refused the report): its next hello carries appliedSeq 2, and that is reported.
    server, session, machine = leased
    with server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        epoch = receive_until(editor, "welcome")["epoch"]
        for seq in (1, 2):
            send(editor, "patch", seq=seq, changes=[{"path": "a.js", "content": str(seq)}])
            assert receive_until(editor, "ack")["seq"] == seq
        with server.agent(machine) as agent:
            send(
                agent,
                "hello",
                machineId=machine,
                session=session["id"],
                appliedSeq=2,
                epoch=epoch,
            )
            assert receive_until(editor, "applied")["seq"] == 2
            send(agent, "ping")
            frames = [json.loads(agent.recv(timeout=10)) for _ in range(1)]
            while frames[-1]["type"] != "pong":
                frames.append(json.loads(agent.recv(timeout=10)))
            assert [f["type"] for f in frames if f["type"] == "patch"] == []  # it had both
    with server.editor(session) as late:
        send(late, "hello", lastSeq=2)
        assert receive_until(late, "welcome")["applied"] == 2


def test_a_reconnecting_editor_gets_what_it_missed(leased: Any) -> None:
    server, session, _ = leased
    with server.editor(session) as editor:
        send(editor, "hello", lastSeq=0)
        receive_until(editor, "welcome")
        for seq in (1, 2, 3):
            send(editor, "patch", seq=seq, changes=[{"path": f"f{seq}.js", "content": str(seq)}])
            assert receive_until(editor, "ack")["seq"] == seq
    with server.editor(session) as editor:
        send(editor, "hello", lastSeq=1)
        assert receive_until(editor, "welcome")["head"] == 3
        assert [receive_until(editor, "patch")["seq"] for _ in range(2)] == [2, 3]


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        ("nope", {}),
        ("", {}),
        (None, {"origin": "https://evil.example"}),
    ],
)
def test_editor_socket_refuses_bad_tokens_and_origins(
    leased: Any, token: str | None, headers: dict[str, str]
) -> None:
    server, session, _ = leased
    real = session["token"]
    with pytest.raises(InvalidStatus) as refused:
        server.editor(
            session, token=real if token is None else token or "-", additional_headers=headers
        ).__enter__()
    # A refusal before the handshake completes is an HTTP 403, and nothing was accepted.
    assert refused.value.response.status_code == 403


def test_sandbox_socket_refuses_a_wrong_machine_token(leased: Any) -> None:
    server, _, machine = leased
    with pytest.raises(InvalidStatus) as refused:
        server.agent(machine, token="wrong").__enter__()
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"v": 2, "type": "ping"}', "unsupported_version"),
        ('{"v": 1, "type": "launch"}', "invalid_frame"),
        ('{"v": 1, "type": "patch", "seq": "1", "changes": []}', "invalid_frame"),
        (
            '{"v": 1, "type": "patch", "seq": 1, "changes": [{"path": "../x", "content": ""}]}',
            "invalid_frame",
        ),
        (
            '{"v": 1, "type": "patch", "seq": 1, "changes": [{"path": "/etc/x", "content": ""}]}',
            "invalid_frame",
        ),
        (
            '{"v": 1, "type": "patch", "seq": 1, "changes": [{"path": "a\\\\b", "content": ""}]}',
            "invalid_frame",
        ),
        (
            '{"v": 1, "type": "patch", "seq": 1, "changes": [{"path": "x", "content": "a",'
            ' "delete": true}]}',
            "invalid_frame",
        ),
        ('{"v": 1, "type": "hello", "lastSeq": 0, "admin": true}', "invalid_frame"),
    ],
)
def test_malformed_frames_get_an_error_and_change_nothing(
    leased: Any, text: str, code: str
) -> None:
    server, session, _ = leased
    with server.editor(session) as editor:
        editor.send(text)
        assert receive_until(editor, "error")["code"] == code
        send(editor, "hello", lastSeq=0)
        assert receive_until(editor, "welcome")["head"] == 0  # nothing was appended


def test_an_oversized_file_is_refused(leased: Any) -> None:
    server, session, _ = leased
    with server.editor(session) as editor:
        send(editor, "patch", seq=1, changes=[{"path": "big.js", "content": "x" * 600_000}])
        assert receive_until(editor, "error")["code"] == "invalid_frame"
        send(editor, "hello", lastSeq=0)
        assert receive_until(editor, "welcome")["head"] == 0


def test_an_oversized_frame_closes_with_1009(leased: Any) -> None:
    server, session, _ = leased
    with server.editor(session, max_size=None) as editor:
        editor.send("x" * (1024 * 1024 + 1))
        # Told why first (every refused frame is answered), then closed.
        error = json.loads(editor.recv(timeout=10))
        assert (error["type"], error["code"]) == ("error", "frame_too_big")
        with pytest.raises(ConnectionClosed) as closed:
            editor.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_flood_closes_with_1008(leased: Any) -> None:
    server, session, _ = leased
    with server.editor(session) as editor:
        # The server may close while this is still sending: what it sent before is read after.
        with contextlib.suppress(ConnectionClosed):
            for _ in range(2000):
                send(editor, "ping")
        received = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(json.loads(editor.recv(timeout=10)))
        assert received[-1]["type"] == "error" and received[-1]["code"] == "rate_limited"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_a_socket_opened_with_a_revoked_token_never_hears_the_next_session(
    settings: Settings,
) -> None:
    # A recycle gives the machine a new token; a socket opened with the old one (read inside
    # the machine during the last session) stays open until it is to serve a new session.
    stolen, fresh = fill_pool(1) + fill_pool(1)
    _set_tokens([stolen, fresh])
    user = make_user(settings.database_url or "")
    with live_server(settings) as host:
        server = Server(host)
        with server.agent(stolen) as old, server.agent(fresh) as current:
            send(old, "hello", machineId=stolen, session=None, appliedSeq=0)
            send(current, "hello", machineId=fresh, session=None, appliedSeq=0)
            _set_tokens([stolen], "the-new-token")
            for _ in range(2):  # lease both machines
                response = httpx.post(
                    f"http://{host}/api/preview/sessions",
                    json={"projectId": str(user.project_id)},
                    headers=user.headers,
                )
                assert response.status_code == 201, response.text

            assert receive_until(current, "assign")["session"]
            with pytest.raises(ConnectionClosed) as closed:
                receive_until(old, "assign")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        # The machine's own agent, with the new token, is served as usual.
        with server.agent(stolen, token="the-new-token") as agent:
            send(agent, "hello", machineId=stolen, session=None, appliedSeq=0)
            assert receive_until(agent, "assign")["session"]
