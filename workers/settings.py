"""Building arq's Worker from a WorkerConfig (settings are never module globals).

Every job is wrapped for store outages (workers.outage): queued jobs wait for the store and run
again, cron jobs skip their tick. The `worker` command and `dev` run the Worker under
workers.supervisor, which starts a new one when arq's stops on a Redis error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Function, Worker, func

from pool.core.gc_pauses import freeze_startup_heap
from pool.core.pool_history import SAMPLE_SECONDS as POOL_SAMPLE_SECONDS
from pool.services.alerts import EVALUATE_SECONDS
from workers import jobs
from workers.config import WorkerConfig
from workers.context import WorkerContext
from workers.job_metrics import timed
from workers.outage import Job, OutageLog, RetryPolicy, Store, outlasting, skipping

HEALTH_CHECK_INTERVAL_SECONDS = 5
# How often local machines' CPU and memory are read (preview_machine_* metrics).
MACHINE_SAMPLE_SECONDS = 15
ALERT_EVALUATE_SECONDS = EVALUATE_SECONDS


def _every(seconds: int) -> set[int]:
    return set(range(0, 60, max(1, min(seconds, 60))))


def redis_settings(config: WorkerConfig) -> RedisSettings:
    """arq's connection settings, without arq's own connection retries (five, a second apart,
    each logged): the supervisor retries with backoff and logs an outage once."""
    return dataclasses.replace(RedisSettings.from_dsn(config.redis_url), conn_retries=0)


def build_worker(
    config: WorkerConfig,
    *,
    burst: bool = False,
    handle_signals: bool = False,
    redis_pool: ArqRedis | None = None,
    on_started: Callable[[ArqRedis], Awaitable[None]] | None = None,
    outages: OutageLog | None = None,
    retry: RetryPolicy | None = None,
) -> Worker:
    """An arq Worker for `config`. `redis_pool`: the supervisor's connection (else arq opens
    its own); `on_started` is awaited once the worker's resources are open."""
    outages = outages or OutageLog()
    retry = retry or RetryPolicy()

    def queued(job: Job, timeout: int) -> Job:
        # Half the timeout waiting for a store, so arq's timeout never kills a waiting job.
        return timed(outlasting(job, budget=timeout / 2, outages=outages, policy=retry))

    def ticked(job: Job, reads: tuple[Store, ...] = (Store.POSTGRES, Store.REDIS)) -> Job:
        return timed(skipping(job, outages=outages, reads=reads), tick=True)

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["deps"] = await WorkerContext.open(config, ctx["redis"])
        if on_started is not None:
            await on_started(ctx["redis"])
        freeze_startup_heap()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        deps: WorkerContext | None = ctx.get("deps")
        if deps is not None:
            await deps.close()

    def capped(seconds: int) -> int:
        # arq runs a killed worker's job again only once its in-progress key expires, which
        # lives for the longest timeout of any job (+10 s): every timeout stays within the
        # configured bound, so that is minutes, not the hour a long job would make it.
        return min(seconds, config.job_timeout_seconds)

    functions: list[Function] = [
        # keep_result=0: a finished job leaves no result key behind, so the same job id (one
        # resize per pool, one recycle per machine epoch) can be queued again right away.
        func(queued(jobs.resize, capped(120)), keep_result=0, timeout=capped(120)),
        func(queued(jobs.recycle, capped(120)), keep_result=0, timeout=capped(120), max_tries=3),
        func(
            queued(jobs.boot_session, capped(180)),
            keep_result=0,
            timeout=capped(180),
            max_tries=2,
        ),
        func(
            queued(jobs.hydrate_machine, capped(60)), keep_result=0, timeout=capped(60), max_tries=3
        ),
        func(
            queued(jobs.wake_machine, capped(120)), keep_result=0, timeout=capped(120), max_tries=2
        ),
        # One machine at a time, each a resize plus a reboot (and a suspend): a large pool takes
        # a while, so the job stops at half its timeout and asks arq to run it again (Retry),
        # up to max_tries times.
        func(
            queued(jobs.resize_guest, config.job_timeout_seconds),
            keep_result=0,
            timeout=config.job_timeout_seconds,
            max_tries=40,
        ),
    ]
    cron_jobs = [
        # unique=True (arq's default) gives each run a job id from its scheduled time, so with
        # several workers each tick runs once.
        cron(
            ticked(jobs.reap),
            second=_every(config.reap_interval_seconds),
            unique=True,
            run_at_startup=True,
            keep_result=0,
            timeout=capped(60),
        ),
        cron(
            ticked(jobs.resize),
            name="resize_cron",
            second=_every(config.resize_interval_seconds),
            unique=True,
            run_at_startup=True,
            keep_result=0,
            timeout=capped(120),
        ),
        cron(
            ticked(jobs.sample_machines, reads=()),  # the provider only: no store
            second=_every(MACHINE_SAMPLE_SECONDS),
            unique=True,
            keep_result=0,
            timeout=capped(30),
        ),
        cron(
            ticked(jobs.sample_pools, reads=(Store.REDIS,)),
            second=_every(POOL_SAMPLE_SECONDS),
            unique=True,
            run_at_startup=True,
            keep_result=0,
            timeout=capped(30),
        ),
        # Not skipping(): it reports store outages itself (and must not mark a store up whose
        # check failed).
        cron(
            timed(jobs.evaluate_alerts, tick=True),
            second=_every(ALERT_EVALUATE_SECONDS),
            unique=True,
            keep_result=0,
            timeout=capped(30),
        ),
        cron(
            ticked(jobs.reconcile),
            second=_every(config.reconcile_interval_seconds),
            unique=True,
            keep_result=0,
            timeout=capped(120),
        ),
    ]
    return Worker(
        functions=functions,
        cron_jobs=cron_jobs,
        redis_settings=RedisSettings.from_dsn(config.redis_url),
        redis_pool=redis_pool,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        handle_signals=handle_signals,
        burst=burst,
        max_jobs=20,
    )
