"""Editor frames as activity: when a frame must reach Postgres (pure), and the recorder's
task discipline (one write in flight, nothing left running)."""

from __future__ import annotations

import asyncio

import pytest

from app.realtime.activity import ActivityRecorder, flush_due
from sql.errors import DatabaseUnavailable


@pytest.mark.parametrize(
    ("now", "last", "urgent", "due"),
    [
        (100.0, None, False, True),  # the first frame of a socket
        (100.0, 99.0, False, False),  # within the interval
        (100.0, 95.0, False, True),  # the interval has passed
        (100.0, 99.9, True, True),  # right after an idle warning
    ],
)
def test_flush_due(now: float, last: float | None, urgent: bool, due: bool) -> None:
    assert flush_due(now, last, 5.0, urgent) is due


async def test_frames_are_written_at_most_once_per_interval_and_at_once_after_a_warning() -> None:
    writes: list[float] = []
    clock = [0.0]

    async def record() -> None:
        writes.append(clock[0])

    recorder = ActivityRecorder(record, interval=5.0, clock=lambda: clock[0])
    for t in (0.0, 1.0, 2.0, 6.0, 7.0):
        clock[0] = t
        recorder.frame()
        await asyncio.sleep(0)
    recorder.warned()
    clock[0] = 7.5
    recorder.frame()
    await asyncio.sleep(0)
    await recorder.aclose()
    assert writes == [0.0, 6.0, 7.5]


async def test_a_failed_write_is_retried_by_the_next_frame_and_nothing_leaks() -> None:
    attempts = 0

    async def record() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise DatabaseUnavailable("down")

    recorder = ActivityRecorder(record, interval=60.0)
    recorder.frame()
    await asyncio.sleep(0)
    recorder.frame()  # within the interval, but the first write failed
    await asyncio.sleep(0)
    await recorder.aclose()
    assert attempts == 2
    assert all(t.get_name() != "editor-activity" for t in asyncio.all_tasks())
