"""The machine's own report: `stats` frames with dev-server restarts, CPU seconds and memory.

The orchestrator cannot read a Fly machine's cgroup, and nobody but the agent sees its dev
server restart, so the agent says so itself (docs/protocol.md, docs/metrics.md). One task,
owned by the agent's TaskGroup, sends a frame every `STATS_SECONDS` and at once after each
restart of the dev server. All figures are totals since the agent started (the restart count
starts at 0 with it; the gateway handles a restarted agent), so a dropped frame loses nothing
that the next one does not carry.

Reading /proc can take a few milliseconds on a busy machine: it runs in a thread, off the event
loop that applies patches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.agent.devserver import DevServer
from sandbox.agent.protocol import frame
from sandbox.agent.usage import Usage, read_usage

STATS_SECONDS = 15.0

Send = Callable[[dict[str, Any]], Awaitable[object]]


def stats_frame(restarts: int, usage: Usage | None) -> dict[str, Any]:
    """The frame; figures that could not be read are left out, never guessed."""
    fields: dict[str, Any] = {"devserverRestarts": restarts}
    if usage is not None and math.isfinite(usage.cpu_seconds):
        fields["cpuSeconds"] = round(usage.cpu_seconds, 3)
        fields["memoryBytes"] = usage.memory_bytes
    return frame("stats", **fields)


class StatsReporter:
    def __init__(
        self,
        send: Send,
        devserver: DevServer,
        read: Callable[[], Usage | None] = read_usage,
        interval: float = STATS_SECONDS,
    ) -> None:
        self._send = send
        self._devserver = devserver
        self._read = read
        self._interval = interval

    async def run(self) -> None:
        restarted = self._devserver.restarted
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await restarted.wait()
            restarted.clear()
            usage = await asyncio.to_thread(self._read)
            await self._send(stats_frame(self._devserver.restarts, usage))
