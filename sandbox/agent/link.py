"""The agent's socket to the orchestrator's gateway (`/api/sandbox/ws`).

`OrchestratorLink.run` connects, sends `hello` (what the agent has applied) and then whatever
`on_connect` adds (the current status), and hands each incoming frame to `on_frame` in arrival
order: frames are handled one at a time, which is what keeps patches in order. When the
socket drops, for whatever reason, it reconnects with capped, jittered exponential backoff,
forever: the orchestrator restarts, the agent outlives it.

While connected, a heartbeat task sends `ping` every `PING_SECONDS` so the gateway's idle
timer never fires on a quiet machine; websockets' own protocol-level pings detect a dead peer.
`send` never waits for a connection: frames produced while disconnected are dropped, because
the next `hello` and status restate everything that matters (`applied` up to appliedSeq).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, WebSocketException

from sandbox.agent.backoff import backoff_delay
from sandbox.agent.errors import FrameError
from sandbox.agent.protocol import ServerFrame, frame, parse_server_frame

logger = logging.getLogger(__name__)

PING_SECONDS = 20.0
STABLE_SECONDS = 5.0
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
# A hydrate carries a whole snapshot (up to 8 MiB of content, more once JSON-escaped).
MAX_FRAME = 64 * 1024 * 1024

OnFrame = Callable[[ServerFrame], Awaitable[None]]
OnConnect = Callable[[], Awaitable[None]]
Hello = Callable[[], dict[str, Any]]


class OrchestratorLink:
    def __init__(
        self,
        url: str,
        machine_id: str,
        token: str,
        *,
        hello: Hello,
        on_frame: OnFrame,
        on_connect: OnConnect,
    ) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}", "x-machine-id": machine_id}
        self._hello = hello
        self._on_frame = on_frame
        self._on_connect = on_connect
        self._socket: ClientConnection | None = None

    async def run(self) -> None:
        attempt = 0
        opened: float | None = None
        while True:
            try:
                async with connect(
                    self._url,
                    additional_headers=self._headers,
                    open_timeout=OPEN_TIMEOUT,
                    close_timeout=CLOSE_TIMEOUT,
                    max_size=MAX_FRAME,
                    proxy=None,
                ) as socket:
                    opened = time.monotonic()
                    try:
                        await self._serve(socket)
                    except asyncio.CancelledError:
                        await socket.close(1001, "agent stopping")
                        raise
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
                logger.info("orchestrator link down: %s", exc or type(exc).__name__)
            finally:
                self._socket = None
            # A connection that held for a while starts the backoff over; one dropped at once
            # (a gateway refusing this machine after the handshake) keeps growing it.
            if opened is not None and time.monotonic() - opened >= STABLE_SECONDS:
                attempt = 0
            opened = None
            delay = backoff_delay(attempt, base=0.2, cap=10.0, jitter=random.random() * 0.5)
            attempt += 1
            await asyncio.sleep(delay)

    async def send(self, message: dict[str, Any]) -> bool:
        socket = self._socket
        if socket is None:
            return False
        try:
            await socket.send(json.dumps(message))
        except ConnectionClosed:
            return False
        return True

    async def send_hello(self) -> bool:
        return await self.send(self._hello())

    async def _serve(self, socket: ClientConnection) -> None:
        self._socket = socket
        await socket.send(json.dumps(self._hello()))
        await self._on_connect()
        # Not a TaskGroup: that would wrap the socket's ConnectionClosed in an ExceptionGroup.
        heartbeat = asyncio.create_task(self._heartbeat(socket))
        try:
            async for message in socket:
                try:
                    parsed = parse_server_frame(message)
                except FrameError as exc:
                    logger.warning("dropped a frame from the orchestrator: %s", exc)
                    continue
                await self._on_frame(parsed)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _heartbeat(self, socket: ClientConnection) -> None:
        while True:
            await asyncio.sleep(PING_SECONDS)
            try:
                await socket.send(json.dumps(frame("ping")))
            except ConnectionClosed:
                return
