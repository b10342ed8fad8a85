"""Findings on the realtime gateway's frame parsing (issue 9, item 13, and "every refused frame
gets an `error` frame and a log line"): a lone surrogate in a patch dropped the socket with no
error frame and no log; `v: true` passed as protocol version 1; refusals left no log line.

On a real uvicorn server (tests/integration/live.py) with the editor and a simulated agent
speaking raw frames, as in tests/integration/test_gateway.py, whose helpers these reuse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from app.settings import Settings
from tests.conftest import fill_pool, make_user
from tests.integration.live import live_server
from tests.integration.test_gateway import MACHINE_TOKEN, Server, _set_tokens, receive_until, send

GUARD = "app.realtime.guard"


@pytest.fixture
def gateway(settings: Settings) -> Iterator[tuple[Server, dict[str, Any], str]]:
    machines = fill_pool(1)
    _set_tokens(machines, MACHINE_TOKEN)
    user = make_user(settings.database_url or "")
    with live_server(settings) as host:
        response = httpx.post(
            f"http://{host}/api/preview/sessions",
            json={"projectId": str(user.project_id)},
            headers=user.headers,
        )
        assert response.status_code == 201, response.text
        yield Server(host), response.json(), machines[0]


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == GUARD]


def _patch(content: str) -> str:
    # json.dumps writes a non-ASCII character as a \u escape, a lone surrogate included: the
    # frame is the ASCII text an attacker would send.
    change = {"path": "a.js", "content": content}
    return json.dumps({"v": 1, "type": "patch", "seq": 1, "changes": [change]})


# A lone surrogate is legal JSON syntax (`\ud800`) but no Unicode text: it cannot be written
# as UTF-8 to Redis or to a file. A surrogate pair (an escaped emoji) is fine.
LONE_SURROGATE = _patch("x\ud800")
ESCAPED_PAIR = _patch("\U0001f600")


def test_a_lone_surrogate_gets_an_error_frame_and_a_log_line_and_the_socket_lives_on(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=GUARD)
    server, session, _ = gateway
    with server.editor(session) as editor:
        editor.send(LONE_SURROGATE)
        error = receive_until(editor, "error")
        assert error["code"] == "malformed" and "surrogate" in error["message"]
        # The same socket goes on: nothing was appended, and a good patch is acked.
        send(editor, "hello", lastSeq=0)
        assert receive_until(editor, "welcome")["head"] == 0
        editor.send(ESCAPED_PAIR)
        assert receive_until(editor, "ack")["seq"] == 1
    assert any("malformed" in line and session["id"] in line for line in _refusals(caplog))


def test_an_agents_lone_surrogate_gets_an_error_frame_too(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=GUARD)
    server, _, machine = gateway
    with server.agent(machine) as agent:
        agent.send('{"v": 1, "type": "log", "level": "info", "message": "\\udfff"}')
        assert receive_until(agent, "error")["code"] == "malformed"
        send(agent, "ping")
        assert receive_until(agent, "pong") == {"v": 1, "type": "pong"}
    assert any("malformed" in line and machine in line for line in _refusals(caplog))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"v": true, "type": "ping"}', "unsupported_version"),  # a bool is an int to Python
        ('{"v": 1.0, "type": "ping"}', "unsupported_version"),
        ('{"v": "1", "type": "ping"}', "unsupported_version"),
        (
            '{"v": 1, "type": "patch", "seq": 1, "changes": [{"path": "a", "delete": 1}]}',
            "invalid_frame",
        ),
        ("not json", "malformed"),
        ('{"v": 1, "type": "launch"}', "invalid_frame"),
        (b"\xff\xfe binary, not UTF-8", "malformed"),
    ],
)
def test_every_refused_frame_gets_an_error_frame_and_a_log_line(
    gateway: Any, caplog: pytest.LogCaptureFixture, text: str | bytes, code: str
) -> None:
    caplog.set_level(logging.INFO, logger=GUARD)
    server, session, _ = gateway
    with server.editor(session) as editor:
        editor.send(text)
        assert receive_until(editor, "error")["code"] == code
        send(editor, "hello", lastSeq=0)
        assert receive_until(editor, "welcome")["head"] == 0  # nothing was appended
    (line,) = [line for line in _refusals(caplog) if code in line]
    assert session["id"] in line and session["token"] not in line


@pytest.mark.parametrize(
    ("flood", "close_code"),
    [(["x" * (1024 * 1024 + 1)], 1009), (['{"v": 1, "type": "ping"}'] * 2000, 1008)],
    ids=["too-big", "flood"],
)
def test_a_violation_closes_with_its_documented_code_and_a_log_line(
    gateway: Any, caplog: pytest.LogCaptureFixture, flood: list[str], close_code: int
) -> None:
    caplog.set_level(logging.INFO, logger=GUARD)
    server, session, _ = gateway
    with server.editor(session, max_size=None) as editor:
        with pytest.raises(ConnectionClosed) as closed:
            for text in flood:
                editor.send(text)
            while True:
                editor.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == close_code
    assert any(f"with {close_code}" in line for line in _refusals(caplog))
