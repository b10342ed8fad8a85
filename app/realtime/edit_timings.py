"""Every edit's ack and applied latency, summarised per session without a write per edit.

One `EditTimings` per editor socket. A patch's clock starts when the gateway has read it; its
ack latency ends when the `ack` is sent, its applied latency when the agent's `applied` report
for its seq (or a later one: reports are cumulative) comes back to this socket. Both go into
fixed-bucket histograms in memory (sql.latency), which are added to the session's row in
`session_edit_latency` at most every `interval` seconds, from one task the recorder owns, and
once more when the socket closes (`aclose`). Histograms add up exactly, so every socket of a
session, on any instance, adds into the same row. A write that fails is merged back and tried
again with the next flush; what an instance that dies holds in memory (at most `interval` of
edits) is lost, which a summary can afford.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pool.core.errors import PoolUnavailable
from sql.errors import DataError
from sql.latency import LatencyHistogram

log = logging.getLogger(__name__)

FLUSH_SECONDS = 30.0
# Patches acked and not yet reported applied that a socket remembers (an agent that is down
# never reports: the oldest are forgotten, not kept forever).
OUTSTANDING = 1024
CLOSE_FLUSH_SECONDS = 5.0

Flush = Callable[[LatencyHistogram, LatencyHistogram], Awaitable[object]]


@dataclass
class _Patch:
    received: float  # when the gateway read it (the recorder's clock)
    acked: bool = False
    applied: bool = False


class EditTimings:
    def __init__(
        self,
        flush: Flush,
        *,
        interval: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush = flush
        self._interval = interval
        self.clock = clock
        self._ack = LatencyHistogram()
        self._applied = LatencyHistogram()
        self._waiting: OrderedDict[int, _Patch] = OrderedDict()  # by seq, oldest first
        self._last_flush = clock()
        self._task: asyncio.Task[None] | None = None

    def started(self, seq: int, received: float) -> None:
        """Patch `seq`, read at `received`, goes to the edit log."""
        self._waiting[seq] = _Patch(received)
        self._waiting.move_to_end(seq)
        while len(self._waiting) > OUTSTANDING:
            self._waiting.popitem(last=False)

    def dropped(self, seq: int) -> None:
        """Patch `seq` was refused: no ack, nothing to apply."""
        self._waiting.pop(seq, None)

    def acked(self, seq: int) -> float | None:
        """The `ack` of `seq` was sent; its ack latency in ms (None for a seq not started
        here)."""
        patch = self._waiting.get(seq)
        if patch is None or patch.acked:
            return None
        ms = (self.clock() - patch.received) * 1000
        self._ack.add(ms)
        patch.acked = True
        if patch.applied:
            del self._waiting[seq]
        self._maybe_flush()
        return ms

    def applied(self, seq: int) -> list[float]:
        """The agent reported every seq up to `seq` applied; the applied latencies (ms) of
        this socket's patches among them. (The report may overtake the ack: the relay and
        the reader run side by side.)"""
        now = self.clock()
        latencies = []
        for done in [s for s, p in self._waiting.items() if s <= seq and not p.applied]:
            patch = self._waiting[done]
            latencies.append((now - patch.received) * 1000)
            patch.applied = True
            if patch.acked:
                del self._waiting[done]
        for ms in latencies:
            self._applied.add(ms)
        if latencies:
            self._maybe_flush()
        return latencies

    def _maybe_flush(self) -> None:
        if self.clock() - self._last_flush < self._interval:
            return
        if self._task is not None and not self._task.done():
            return  # the next sample after that write flushes what came meanwhile
        self._last_flush = self.clock()
        self._task = asyncio.create_task(self._write(*self._take()), name="edit-timings")

    def _take(self) -> tuple[LatencyHistogram, LatencyHistogram]:
        taken = self._ack, self._applied
        self._ack, self._applied = LatencyHistogram(), LatencyHistogram()
        return taken

    async def _write(self, ack: LatencyHistogram, applied: LatencyHistogram) -> None:
        if ack.count == 0 and applied.count == 0:
            return
        try:
            await self._flush(ack, applied)
        except (DataError, PoolUnavailable, OSError) as exc:
            log.warning("could not record edit latencies: %s", exc)
            self._ack.merge(ack)
            self._applied.merge(applied)

    async def aclose(self) -> None:
        """Wait for a write in flight, then write what is left (bounded: a socket's end must
        not wait on a Postgres outage for long)."""
        try:
            async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                if self._task is not None:
                    await self._task
                await self._write(*self._take())
        except TimeoutError:
            log.warning("edit latencies of a closed editor socket were not recorded in time")
