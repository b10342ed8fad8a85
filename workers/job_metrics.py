"""Every job's run time and failures, and the worker's heartbeat (its last cron tick), as
metrics (docs/metrics.md). Wraps outside the outage wrappers (workers.outage), so a run's time
includes any wait for a store, as arq sees it.

A job that hands itself back to arq (`Retry`) did not fail; one that raised anything else, or
was cancelled (arq's timeout), did. The metrics object is the worker context's, read per run:
the wrapper is built before the context opens.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from arq import Retry

from workers.context import WorkerContext
from workers.outage import Job


def timed(job: Job, *, tick: bool = False) -> Job:
    """`job`, with its run time and failure recorded under its name; `tick`: a cron job, whose
    start is also the worker's heartbeat."""
    name = getattr(job, "__name__", "job")

    @functools.wraps(job)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        deps: WorkerContext = ctx["deps"]
        if tick:
            deps.metrics.worker_tick()
        started = time.perf_counter()
        failed = True
        try:
            result = await job(ctx, *args, **kwargs)
            failed = False
            return result
        except Retry:
            failed = False
            raise
        finally:
            deps.metrics.job_ran(name, time.perf_counter() - started, failed)

    return run
