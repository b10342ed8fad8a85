"""Editor on one web process, machine on another: edits flow through Redis, both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.sync.client import connect

from app.settings import Settings
from pool.store.inventory import Inventory
from tests.conftest import REDIS_URL, fill_pool, make_user
from tests.integration.helpers import web_processes

pytestmark = pytest.mark.slow

TOKEN = "fan-out-machine-token"


def _send(ws: Any, kind: str, **fields: Any) -> None:
    ws.send(json.dumps({"v": 1, "type": kind, **fields}))


def _next(ws: Any, kind: str) -> dict[str, Any]:
    for _ in range(50):
        message: dict[str, Any] = json.loads(ws.recv(timeout=10))
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind}")


@pytest.fixture
def two_webs(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    with web_processes(settings.database_url or "", tmp_path, 2) as urls:
        yield [u.removeprefix("http://") for u in urls]


def test_edits_flow_between_two_web_processes(settings: Settings, two_webs: list[str]) -> None:
    (machine,) = fill_pool(1)

    async def set_token() -> None:
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            await Inventory(client).set_token(machine, TOKEN)
        finally:
            await client.aclose()

    asyncio.run(set_token())
    user = make_user(settings.database_url or "")
    a, b = two_webs
    session = httpx.post(
        f"http://{a}/api/preview/sessions",
        headers=user.headers,
        json={"projectId": str(user.project_id)},
    ).json()
    headers = {"authorization": f"Bearer {TOKEN}", "x-machine-id": machine}
    with connect(f"ws://{b}/api/sandbox/ws", additional_headers=headers) as agent:
        _send(agent, "hello", machineId=machine, session=None, appliedSeq=0)
        assert _next(agent, "assign")["session"] == session["id"]
        url = f"ws://{a}/api/preview/sessions/{session['id']}/ws?token={session['token']}"
        with connect(url) as editor:
            _send(editor, "hello", lastSeq=0)
            _next(editor, "welcome")
            for seq in range(1, 51):
                _send(
                    editor,
                    "patch",
                    seq=seq,
                    changes=[{"path": "src/App.jsx", "content": f"version {seq}"}],
                )
                assert _next(editor, "ack")["seq"] == seq
            relayed = [_next(agent, "patch") for _ in range(50)]
            assert [p["seq"] for p in relayed] == list(range(1, 51))  # in order, none lost
            _send(agent, "applied", seq=50)
            _send(agent, "status", state="ready", detail="")
            assert _next(editor, "applied")["seq"] == 50
            assert _next(editor, "status")["state"] == "ready"
