"""What every socket enforces on what it receives: frame size, message rate, idleness.

The rate limit is a token bucket (pure, clock passed in): `rate` frames per second on average
with bursts up to `burst`. Violations close the socket with the codes of RFC 6455: 1009 for a
frame too big, 1008 (policy) for a flood, 1001 (going away) for an idle socket.

Every refusal leaves a log line naming the socket (its path, and the machine for an agent's;
never the query, which holds the editor's token) and why, never the frame's content: a frame
that does not parse is answered with `error` and skipped, a violation closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.realtime.frames import FrameError, frame
from pool.services.metrics import SocketMeter

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1024 * 1024
IDLE_SECONDS = 60.0
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_IDLE = 1001
CLOSE_INTERNAL = 1011
# Private-use codes (RFC 6455 7.4.2), documented in docs/protocol.md. 4000: the session ended
# (an `ended` frame came first); a client must not reconnect.
CLOSE_SESSION_ENDED = 4000


@dataclass
class FrameRateBucket:
    """One socket's frame budget: `take` says whether one more frame fits in it now."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        if self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class SocketClosed(Exception):
    """The peer went away or was closed by a guard; the handler just returns."""


@dataclass
class Guard:
    websocket: WebSocket
    rate: float = 200.0
    burst: float = 400.0
    # None: never closed for silence (the editor socket: a hidden tab stays silent on purpose so
    # that its session can idle out; the server's WebSocket pings still find dead peers).
    idle_seconds: float | None = IDLE_SECONDS
    max_frame_bytes: int = MAX_FRAME_BYTES
    # The socket's frames and refusals, for the metrics (preview_frames_total, ...).
    meter: SocketMeter | None = None
    bucket: FrameRateBucket = field(init=False)

    def __post_init__(self) -> None:
        self.bucket = FrameRateBucket(self.rate, self.burst)

    async def receive(self) -> str:
        """The next text frame, or SocketClosed after closing the socket for a violation."""
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for wraps every receive in a new Task.
            async with asyncio.timeout(self.idle_seconds):
                message = await self.websocket.receive()
        except TimeoutError:
            log.info("closing %s: idle for %ss", describe(self.websocket), self.idle_seconds)
            await self.close(CLOSE_IDLE, "idle")
            raise SocketClosed from None
        if message["type"] == "websocket.disconnect":
            raise SocketClosed
        if self.meter is not None:
            self.meter.frame()
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            if len(data) > self.max_frame_bytes:
                await self._refuse(CLOSE_TOO_BIG, "frame too big", "frame_too_big")
            try:
                text = data.decode()
            except UnicodeDecodeError:
                text = ""  # not JSON either: the parser refuses it
        elif len(text) > self.max_frame_bytes:
            await self._refuse(CLOSE_TOO_BIG, "frame too big", "frame_too_big")
        if not self.bucket.take(time.monotonic()):
            await self._refuse(CLOSE_POLICY, "too many messages", "rate_limited")
        return text

    async def _refuse(self, code: int, reason: str, error: str) -> NoReturn:
        """Every refused frame is answered: an `error` frame saying why, then the close."""
        if self.meter is not None:
            self.meter.refused(error)
        log.warning("closing %s with %d: %s", describe(self.websocket), code, reason)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.send_text(frame("error", code=error, message=reason))
        await self.close(code, reason)
        raise SocketClosed

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.websocket.close(code=code, reason=reason)
        except (RuntimeError, WebSocketDisconnect):
            pass  # already closed


def describe(websocket: WebSocket) -> str:
    """The socket for a log line: its path (no query: the editor's token is there) and, for an
    agent's, the machine it says it is."""
    machine = websocket.headers.get("x-machine-id")
    path = websocket.scope.get("path", "?")
    return f"{path} (machine {machine[:64]!r})" if machine else str(path)


async def run_until_either_ends(reader: Awaitable[None], relay: Awaitable[None], name: str) -> None:
    """Run a socket's reader and relay together; when either ends (disconnect, guard close, an
    error in the relay) the other is cancelled and awaited, so no task outlives its socket."""
    tasks = [
        asyncio.ensure_future(reader),
        asyncio.ensure_future(relay),
    ]
    tasks[0].set_name(f"{name}-reader")
    tasks[1].set_name(f"{name}-relay")
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(
            result, SocketClosed | WebSocketDisconnect | RuntimeError
        ):
            log.warning("%s ended with %r", name, result)


Message = TypeVar("Message")
LOGGED_REFUSALS = 3  # per socket, then one line per hundred


async def incoming(
    guard: Guard, parse: Callable[[str], Message], send: Callable[[str], Awaitable[None]]
) -> AsyncIterator[Message]:
    """The socket's frames, parsed. A malformed one is answered with `error` and skipped: the
    socket stays open, and nothing else happens because of it."""
    refused = 0
    while True:
        text = await guard.receive()
        try:
            message = parse(text)
        except FrameError as exc:
            refused += 1
            if guard.meter is not None:
                guard.meter.refused(exc.code)
            # The first few, then one line per hundred: a client that only sends garbage
            # (up to the rate cap) must not write hundreds of lines a second.
            if refused <= LOGGED_REFUSALS or refused % 100 == 0:
                log.info(
                    "refused frame #%d on %s: %s, %s",
                    refused,
                    describe(guard.websocket),
                    exc.code,
                    exc,
                )
            await send(frame("error", code=exc.code, message=exc.message))
            continue
        yield message
