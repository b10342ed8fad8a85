"""A virtual clock shared by the Fly fake and the provider under test.

`sleep` lets other tasks run once, then moves time forward to the sleeper's wake-up moment
(never backwards). Time therefore only passes when someone sleeps, and a test that waits out
Fly's rate limits or a 60 s wait call takes no real time. Time may run ahead of a sleeper
that another task overtook; nothing here relies on time passing slowly, only on it being
monotonic and on a sleeper waking no earlier than it asked.
"""

from __future__ import annotations

import asyncio


class VirtualClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(seconds, 0.0)

    async def sleep(self, seconds: float) -> None:
        wake = self._now + max(seconds, 0.0)
        await asyncio.sleep(0)
        self._now = max(self._now, wake)
