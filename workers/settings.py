"""Building arq's WorkerSettings from a WorkerConfig (settings are never module globals)."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Function, Worker, func

from workers import jobs
from workers.config import WorkerConfig
from workers.context import WorkerContext

HEALTH_CHECK_INTERVAL_SECONDS = 5


def _every(seconds: int) -> set[int]:
    return set(range(0, 60, max(1, min(seconds, 60))))


def build_worker(
    config: WorkerConfig, *, burst: bool = False, handle_signals: bool = False
) -> Worker:
    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["deps"] = await WorkerContext.open(config, ctx["redis"])

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        deps: WorkerContext | None = ctx.get("deps")
        if deps is not None:
            await deps.close()

    functions: list[Function] = [
        # keep_result=0: a finished job leaves no result key behind, so the same job id (one
        # resize per pool, one recycle per machine epoch) can be queued again right away.
        func(jobs.resize, keep_result=0, timeout=120),
        func(jobs.recycle, keep_result=0, timeout=120, max_tries=3),
        func(jobs.boot_session, keep_result=0, timeout=180, max_tries=2),
        func(jobs.hydrate_machine, keep_result=0, timeout=60, max_tries=3),
        func(jobs.wake_machine, keep_result=0, timeout=120, max_tries=2),
        # One machine at a time, each a resize plus a reboot (and a suspend): a large pool
        # takes a while.
        func(jobs.resize_guest, keep_result=0, timeout=3600, max_tries=2),
    ]
    cron_jobs = [
        # unique=True (arq's default) gives each run a job id from its scheduled time, so with
        # several workers each tick runs once.
        cron(
            jobs.reap,
            second=_every(config.reap_interval_seconds),
            unique=True,
            run_at_startup=True,
            keep_result=0,
            timeout=60,
        ),
        cron(
            jobs.resize,
            name="resize_cron",
            second=_every(config.resize_interval_seconds),
            unique=True,
            run_at_startup=True,
            keep_result=0,
            timeout=120,
        ),
        cron(
            jobs.reconcile,
            second=_every(config.reconcile_interval_seconds),
            unique=True,
            keep_result=0,
            timeout=120,
        ),
    ]
    return Worker(
        functions=functions,
        cron_jobs=cron_jobs,
        redis_settings=RedisSettings.from_dsn(config.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        handle_signals=handle_signals,
        burst=burst,
        max_jobs=20,
    )
