"""From the dev server's output to `log` frames.

The dev server's stdout carries two things: Vite's own output, and the preview page's console,
one marked JSON line per message (printed by the template's preview plugin). Lines are queued
by the dev-server reader without blocking it; `LogPump.run`, one task, turns them into frames:
page messages one by one, Vite's output in blocks (a multi-line compile error is one frame,
not thirty), closed when the output pauses. Each source has its own token bucket; what the
bucket refuses is counted and reported once it allows again, so the socket's message-rate cap
is never at risk and nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.agent.backoff import TokenBucket
from sandbox.agent.protocol import frame

CONSOLE_MARK = "@@preview:console "
PAGE_LEVELS = frozenset({"debug", "log", "info", "warn", "error"})
MAX_MESSAGE = 4000
BLOCK_LINES = 40
QUIET_SECONDS = 0.05
QUEUE_SIZE = 2000
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Vite announces every hot update; the `applied` frame already says so, once per patch.
ROUTINE = re.compile(r"\[vite\] (\(client\) )?hmr update ")

Send = Callable[[dict[str, Any]], Awaitable[object]]


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


async def read_lines(
    stream: asyncio.StreamReader, max_line: int, on_raw: Callable[[bytes], None]
) -> None:
    """A child's output, line by line, until it ends. Read in chunks, not readline(): a line
    over the stream's limit would raise there; here one is cut into pieces of `max_line`."""
    pending = b""
    while chunk := await stream.read(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > max_line:
            lines.append(pending)
            pending = b""
        for raw in lines:
            on_raw(raw)
    if pending:
        on_raw(pending)


def page_message(line: str) -> tuple[str, str] | None:
    """(level, message) of a marked console line, or None if it is not one."""
    if not line.startswith(CONSOLE_MARK):
        return None
    try:
        raw = json.loads(line[len(CONSOLE_MARK) :])
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    # The page runs the user's code: it may send anything on this channel.
    level = raw.get("level") if raw.get("level") in PAGE_LEVELS else "log"
    message = raw.get("message")
    if not isinstance(message, str):
        message = json.dumps(message)
    return str(level), message[:MAX_MESSAGE]


class LogPump:
    def __init__(self, send: Send, clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._clock = clock
        self._lines: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._buckets = {"page": TokenBucket(50, 100), "devserver": TokenBucket(10, 30)}
        self._dropped = {"page": 0, "devserver": 0}

    def feed(self, line: str) -> None:
        """Queue one output line; never blocks the reader (a full queue counts as dropped)."""
        try:
            self._lines.put_nowait(line)
        except asyncio.QueueFull:
            self._dropped["devserver"] += 1

    async def emit(self, source: str, level: str, message: str) -> None:
        if not self._buckets[source].allow(self._clock()):
            self._dropped[source] += 1
            return
        if dropped := self._dropped[source]:
            self._dropped[source] = 0
            note = f"({dropped} {source} messages dropped by the rate limit)"
            await self._send(frame("log", level="warn", message=note, source=source))
        await self._send(frame("log", level=level, message=message[:MAX_MESSAGE], source=source))

    async def run(self) -> None:
        block: list[str] = []
        while True:
            line: str | None = None
            if block:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(QUIET_SECONDS):
                        line = await self._lines.get()
            else:
                line = await self._lines.get()
            if line is None or len(block) >= BLOCK_LINES:
                await self._flush(block)
                block = []
            if line is None:
                continue
            page = page_message(line)
            if page is not None:
                await self.emit("page", *page)
            elif line.strip() and not ROUTINE.search(line):
                block.append(line)

    async def _flush(self, block: list[str]) -> None:
        if not block:
            return
        message = "\n".join(block)
        level = "error" if re.search(r"error", message, re.IGNORECASE) else "info"
        await self.emit("devserver", level, message)
