"""Editor frames as session activity: every frame an editor sends restarts the session's idle
clock, without a database write per frame and without blocking the socket on Postgres.

One `ActivityRecorder` per editor socket. A frame marks the socket active; Postgres hears of it
(sql.sessions.record_activity) at most every `interval` seconds, from one task the recorder owns
(at most one write in flight; `aclose` cancels and awaits it). After an `idleWarning` the next
frame is written at once: the reaper may end the session within seconds, and the frame that
answers the warning must count before that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pool.core.errors import PoolUnavailable
from sql.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def flush_due(now: float, last_flush: float | None, interval: float, urgent: bool) -> bool:
    """Whether a frame at `now` must reach Postgres: the first one, one after a warning, or
    one `interval` after the last write."""
    return urgent or last_flush is None or now - last_flush >= interval


class ActivityRecorder:
    def __init__(
        self,
        record: Callable[[], Awaitable[object]],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self._interval = interval
        self._clock = clock
        self._last_flush: float | None = None
        self._urgent = False
        self._pending = False  # a frame arrived while a write was in flight
        self._task: asyncio.Task[None] | None = None

    def warned(self) -> None:
        """The session's editors were warned: the next frame is written at once."""
        self._urgent = True

    def frame(self) -> None:
        now = self._clock()
        if not flush_due(now, self._last_flush, self._interval, self._urgent):
            return
        if self._task is not None and not self._task.done():
            self._pending = True
            return
        self._last_flush, self._urgent = now, False
        self._task = asyncio.create_task(self._write(), name="editor-activity")

    async def _write(self) -> None:
        while True:
            try:
                await self._record()
            except (DatabaseUnavailable, PoolUnavailable) as exc:
                # The next frame tries again; a store outage must not close the editor.
                log.warning("could not record editor activity: %s", exc)
                self._last_flush = None
            if not self._pending:
                return
            self._pending = False

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
