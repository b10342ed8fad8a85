"""workers.supervisor in-process, with a real arq Worker on the real Redis (through a TCP proxy
where Redis has to go away): a Worker that stops is replaced, and the jobs it held run again at
once instead of after arq's in-progress mark expires."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings
from arq.typing import StartupShutdown
from arq.worker import Worker, func

from app.settings import Settings
from tests.conftest import REDIS_URL
from tests.faults.tcp_proxy import tcp_proxy
from workers.outage import OutageLog, RetryPolicy, Store
from workers.supervisor import supervise

pytestmark = pytest.mark.slow

QUICK = RetryPolicy(base=0.05, cap=0.2)
OnStarted = Callable[[ArqRedis], Awaitable[None]]


def _settings(url: str) -> RedisSettings:
    return dataclasses.replace(RedisSettings.from_dsn(url), conn_retries=0)


def _worker(redis: ArqRedis, startup: StartupShutdown, job: Any) -> Worker:
    return Worker(
        functions=[job],
        redis_pool=redis,
        on_startup=startup,
        handle_signals=False,
        poll_delay=0.05,
        keep_result=0,
    )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_unexpected_error_is_logged_and_a_new_worker_started(
    settings: Settings, arq: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    starts = 0
    ran = asyncio.Event()

    async def noop(ctx: dict[str, Any]) -> None:
        ran.set()

    def build(redis: ArqRedis, on_started: OnStarted) -> Worker:
        async def startup(ctx: dict[str, Any]) -> None:
            nonlocal starts
            starts += 1
            if starts == 1:
                raise RuntimeError("a bug at start-up")
            await on_started(redis)

        return _worker(redis, startup, func(noop, name="noop"))

    caplog.set_level(logging.INFO, logger="workers")
    task = asyncio.create_task(
        supervise(build, _settings(REDIS_URL), outages=OutageLog(), policy=QUICK)
    )
    try:
        await arq.enqueue_job("noop")
        await asyncio.wait_for(ran.wait(), 10)
    finally:
        await _stop(task)
    assert starts == 2
    stops = [r for r in caplog.records if "stopped on an unexpected error" in r.getMessage()]
    assert len(stops) == 1 and stops[0].exc_info is not None
    assert isinstance(stops[0].exc_info[1], RuntimeError)


async def test_a_job_cut_off_by_a_redis_outage_runs_again_once_redis_is_back(
    settings: Settings, arq: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0
    first_started, second_done = asyncio.Event(), asyncio.Event()

    async def slow(ctx: dict[str, Any]) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            first_started.set()
            await asyncio.sleep(600)
        second_done.set()

    def build(redis: ArqRedis, on_started: OnStarted) -> Worker:
        async def startup(ctx: dict[str, Any]) -> None:
            await on_started(redis)

        # A 10-minute timeout: arq marks the job in progress for 610 s.
        return _worker(redis, startup, func(slow, name="slow", timeout=600))

    caplog.set_level(logging.INFO, logger="workers")
    with tcp_proxy(REDIS_URL) as proxy:
        outages = OutageLog()
        task = asyncio.create_task(
            supervise(build, _settings(proxy.url(REDIS_URL)), outages=outages, policy=QUICK)
        )
        try:
            await arq.enqueue_job("slow", _job_id="slow-1")
            await asyncio.wait_for(first_started.wait(), 10)
            await asyncio.to_thread(proxy.cut)
            await asyncio.sleep(1.0)
            assert outages.is_down(Store.REDIS)
            await asyncio.to_thread(proxy.restore)
            await asyncio.wait_for(second_done.wait(), 10)
            assert not outages.is_down(Store.REDIS)
        finally:
            await _stop(task)
    assert runs == 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis is unavailable" in m for m in messages) == 1, messages
    assert sum("Redis is available again" in m for m in messages) == 1, messages
    assert any("handed back 1 job(s)" in m for m in messages), messages
