"""A real uvicorn server for the app, in a thread of the test process: sockets are tested
against the server the service runs in, not starlette's TestClient (whose WebSocket teardown
cancels the handler before it can clean up)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.server import create_app, websocket_options
from app.settings import Settings
from pool.services.metrics_endpoint import Listen
from tests.conftest import free_port


@contextmanager
def live_server(
    settings: Settings, port: int | None = None, *, metrics_listen: Listen | None = None
) -> Iterator[str]:
    """`metrics_listen`: serve GET /metrics there too, as `web` does."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings, metrics_listen=metrics_listen),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        **websocket_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
