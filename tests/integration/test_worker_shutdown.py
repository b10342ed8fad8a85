"""A worker shutting down (workers/supervisor.py, docs/architecture.md "Shutdown"): no job starts
any more, running jobs get the completion wait to finish, the rest are cancelled and queued
again by arq, all within the stop's bound. Real arq Worker, real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq import ArqRedis
from arq.connections import RedisSettings
from arq.constants import default_queue_name, in_progress_key_prefix
from arq.worker import Worker, func

from tests.conftest import REDIS_URL
from workers import supervisor
from workers.outage import OutageLog

WAIT = 1.5  # the completion wait, shortened for the test


async def _short(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.5)
    await ctx["redis"].set("short-finished", "1")


async def _endless(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(3600)


def _build(redis: ArqRedis, on_started: Callable[[ArqRedis], Awaitable[None]]) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        await on_started(ctx["redis"])

    return Worker(
        functions=[func(_short, name="short"), func(_endless, name="endless")],
        redis_pool=redis,
        on_startup=startup,
        handle_signals=False,
        poll_delay=0.05,
        keep_result=0,
    )


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def test_running_jobs_get_the_completion_wait_then_are_cancelled_and_queued_again(
    redis_client: aioredis.Redis, arq: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "JOB_COMPLETION_WAIT_SECONDS", WAIT)
    running = asyncio.create_task(
        supervisor.supervise(_build, RedisSettings.from_dsn(REDIS_URL), outages=OutageLog())
    )
    try:
        for name in ("short", "endless"):
            assert await arq.enqueue_job(name, _job_id=name) is not None

        async def both_running() -> bool:
            return (
                int(
                    await redis_client.exists(
                        *(in_progress_key_prefix + j for j in ("short", "endless"))
                    )
                )
                == 2
            )

        await _until(both_running, 10)
        started = time.monotonic()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, WAIT + 2 * supervisor.STOP_DEADLINE_SECONDS + 5)
        elapsed = time.monotonic() - started
    finally:
        running.cancel()

    # The short job finished inside the wait; the endless one ran until the wait was over.
    assert await redis_client.get("short-finished") == "1"
    assert WAIT - 0.2 <= elapsed < WAIT + supervisor.STOP_DEADLINE_SECONDS
    # Cancelled, not lost: back in the queue, free for any worker (no in-progress mark).
    assert await redis_client.zscore(default_queue_name, "endless") is not None
    assert not await redis_client.exists(in_progress_key_prefix + "endless")
