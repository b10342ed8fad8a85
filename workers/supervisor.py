"""The worker's supervisor: when arq's Worker stops on an error, a new one takes its place.

arq's Worker ends its main loop at the first Redis error it meets outside a job (polling the
queue, enqueueing a cron tick, recording a job's result; arq 0.28), and its on_startup fails
while Postgres is down. Run bare, the `worker` process then exits (in `dev`, the task dies) and
nothing refills, recycles, reaps or reconciles until someone restarts it. `supervise` runs one
Worker after another:

- each attempt gets a fresh Worker and a fresh Redis connection: nothing of a failed one is
  reused. A failed Worker is stopped within a deadline: its job tasks are cancelled and awaited,
  its health key deleted if Redis answers, its resources closed (`stop_worker`; arq's own
  `close` needs Redis and would leave the rest open when it is down).
- the jobs a failed Worker held are handed back. arq marks a running job "in progress" for the
  longest job timeout plus 10 s (an hour here) and a Worker that lost Redis cannot clear the
  mark; the job was cancelled, and every job is idempotent, so the next Worker clears the marks
  of those jobs as soon as it has started, and any worker runs them again.
- between attempts it waits with capped exponential backoff and jitter (workers.outage). A store
  outage is logged once when it begins and once when a Worker has started again; any other error
  is logged with its traceback every time it stops a Worker.

Only cancellation stops it (SIGTERM or Ctrl-C in `worker`, `dev` shutting down); a burst worker
returns once its queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import Worker

from pool.services.metrics import make_metrics
from pool.services.metrics_endpoint import serve_metrics
from workers.config import WorkerConfig
from workers.outage import OutageLog, RetryPolicy, Store, store_of
from workers.settings import build_worker, redis_settings

log = logging.getLogger(__name__)

# How long a failed Worker's tasks get to finish after being cancelled, and Redis to answer
# the clean-up calls: a stop never hangs on a store that does not answer.
STOP_DEADLINE_SECONDS = 5.0
# On shutdown (cancellation, not a failed Worker), how long running jobs get to finish before
# they are cancelled, as arq's own job_completion_wait gives them when arq handles the signals.
# A cancelled job is not lost: arq queues it again (every job is idempotent).
JOB_COMPLETION_WAIT_SECONDS = 10.0

BuildWorker = Callable[[ArqRedis, Callable[[ArqRedis], Awaitable[None]]], Worker]


async def supervise(
    build: BuildWorker,
    redis_settings: RedisSettings,
    *,
    outages: OutageLog,
    policy: RetryPolicy | None = None,
    rand: Callable[[], float] = random.random,
) -> None:
    """Run Workers from `build(redis, on_started)` until cancelled (or a burst one is done)."""
    policy = policy or RetryPolicy()
    attempt = 0
    held: set[str] = set()

    async def on_started(redis: ArqRedis) -> None:
        nonlocal attempt
        if held:
            await redis.delete(*(in_progress_key_prefix + job_id for job_id in held))
            log.warning("handed back %d job(s) the stopped worker held", len(held))
            held.clear()
        outages.up(Store.REDIS)
        outages.up(Store.POSTGRES)
        attempt = 0

    while True:
        redis: ArqRedis | None = None
        worker: Worker | None = None
        try:
            redis = await create_pool(redis_settings)
            worker = build(redis, on_started)
            await worker.async_run()
            return
        except Exception as exc:
            _log_stop(exc, outages)
        finally:
            if worker is not None:
                # Cancelled: the process (or `dev`) is shutting down and the Worker is healthy.
                task = asyncio.current_task()
                wait = JOB_COMPLETION_WAIT_SECONDS if task and task.cancelling() else 0.0
                held |= await stop_worker(worker, job_wait=wait)
            if redis is not None:
                await redis.aclose()
        delay = policy.delay(attempt, rand)
        attempt += 1
        log.debug("starting a new worker in %.1f s", delay)
        await asyncio.sleep(delay)


def _log_stop(exc: Exception, outages: OutageLog) -> None:
    store = store_of(exc)
    if store is None:
        log.error("the worker stopped on an unexpected error; starting a new one", exc_info=exc)
    else:
        outages.down(store, exc)


async def stop_worker(worker: Worker, *, job_wait: float = 0.0) -> set[str]:
    """Stop a Worker whatever state its stores are in; returns the ids of the queued jobs it
    held (a cron tick is not handed back: the next tick does its work). Its running jobs get
    `job_wait` seconds to finish first; its main loop is already stopped, so none starts."""
    if job_wait and worker.tasks:
        await asyncio.wait([*worker.tasks.values()], timeout=job_wait)
    ticks = tuple(f"{cron_job.name}:" for cron_job in worker.cron_jobs)
    held = {job_id for job_id in worker.tasks if not job_id.startswith(ticks)}
    tasks = [*worker.tasks.values()]
    if worker.main_task is not None:
        tasks.append(worker.main_task)
    for task in tasks:
        task.cancel()
    if tasks:
        # A cancelled job records its own retry in Redis, which may not answer.
        done, pending = await asyncio.wait(tasks, timeout=STOP_DEADLINE_SECONDS)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("a stopped job task ended with: %r", task.exception())
        if pending:
            log.warning("%d job task(s) did not stop in time", len(pending))
    worker.tasks.clear()
    try:
        await asyncio.wait_for(
            worker.pool.delete(worker.health_check_key), timeout=STOP_DEADLINE_SECONDS
        )
    except Exception as exc:  # only /readyz cares, and the key expires on its own in seconds
        log.debug("could not delete the worker's health key: %s", exc)
    if worker.on_shutdown is not None:
        try:
            await worker.on_shutdown(worker.ctx)
        except Exception:
            log.exception("closing the stopped worker's resources failed")
    return held


async def run_worker(config: WorkerConfig, *, burst: bool = False) -> None:
    """The `worker` command's (and `dev`'s) worker: supervised, surviving store outages.
    Its metrics outlive every Worker it runs (and are served, with `config.metrics_listen`)."""
    metrics = config.metrics or make_metrics(*config.statsd)
    outages = OutageLog(observe=lambda store, up: metrics.store_up(store.name.lower(), up))

    def build(redis: ArqRedis, on_started: Callable[[ArqRedis], Awaitable[None]]) -> Worker:
        return build_worker(
            dataclasses.replace(config, metrics=metrics),
            burst=burst,
            redis_pool=redis,
            on_started=on_started,
            outages=outages,
        )

    async with contextlib.AsyncExitStack() as stack:
        if config.metrics is None:  # made here: closed here
            stack.callback(metrics.close)
        if config.metrics_listen is not None:
            await stack.enter_async_context(serve_metrics(metrics.registry, config.metrics_listen))
        await supervise(build, redis_settings(config), outages=outages)
