"""A preview machine's front for the preview-proxy findings: a real HTTP and WebSocket server
(uvicorn, in a thread of the test process) that records what the proxy sends it, registered as
a ready machine so that a lease hands it to a session.

It reads request bodies as a stream and keeps only their length and hash, so a test can send
it far more than it would want to hold, and the process whose memory is measured (the web) is
never this one's.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pool.store.inventory import Inventory, PoolKey
from tests.conftest import REDIS_URL, free_port, make_user

POOL = PoolKey("react-web", "local")


@dataclass(frozen=True)
class Seen:
    """One request as the machine got it: the target as sent, headers, body length and hash."""

    method: str
    target: str
    headers: dict[str, str]
    length: int
    sha256: str


@dataclass
class RecordingMachine:
    address: str = ""
    requests: list[Seen] = field(default_factory=list)
    sockets: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def http(request: Request) -> Response:
            if request.url.path == "/healthz":
                return JSONResponse({"status": "ready", "machine": "recording"})
            digest, length = hashlib.sha256(), 0
            async for chunk in request.stream():
                digest.update(chunk)
                length += len(chunk)
            target = request.scope["raw_path"].decode("latin-1")
            if query := request.scope["query_string"]:
                target += "?" + query.decode("latin-1")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw}
            self.requests.append(Seen(request.method, target, headers, length, digest.hexdigest()))
            return JSONResponse({"target": target, "length": length})

        async def socket(websocket: WebSocket) -> None:
            self.sockets.append(dict(websocket.headers))
            await websocket.accept()
            try:
                while True:
                    await websocket.send_text(await websocket.receive_text())
            except WebSocketDisconnect:
                pass

        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return Starlette(
            routes=[
                Route("/{rest:path}", http, methods=methods),
                WebSocketRoute("/{rest:path}", socket),
            ]
        )


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """`app` on a real uvicorn server in a thread; yields `127.0.0.1:port`."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="security-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def recording_machine() -> Iterator[RecordingMachine]:
    """A running recording machine, ready in the pool (the only one: the next lease gets it)."""
    machine = RecordingMachine()
    with serve(machine.app()) as host:
        machine.address = f"http://{host}"
        asyncio.run(_make_ready(machine.address))
        yield machine


async def _make_ready(address: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        inventory = Inventory(client)
        machine_id = f"sec-{uuid.uuid4().hex[:10]}"
        await inventory.mark_booting(machine_id, POOL, "machine-token-of-the-recording-machine")
        await inventory.make_ready(machine_id, POOL, address)
    finally:
        await client.aclose()


def lease(base_url: str, database_url: str) -> dict[str, Any]:
    """A session for a new user, through the API: `id`, `token`, `previewUrl`."""
    user = make_user(database_url)
    response = httpx.post(
        f"{base_url}/api/preview/sessions",
        json={"projectId": str(user.project_id)},
        headers=user.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
