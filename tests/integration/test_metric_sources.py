"""Where the worker's metrics come from: a local machine's process group, every job's run,
the cron heartbeat, the stores' verdicts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
from arq import Retry

from pool.providers.local_usage import cpu_seconds_v2, group_usage, parse_proc_stat
from pool.services.metrics import MachineSample, NullMetrics
from tests.prom_text import parse, sample
from workers.job_metrics import timed
from workers.outage import OutageLog, Store

# 0.3 s of CPU, then idle until killed.
BURN_THEN_SLEEP = (
    "import time\nt = time.process_time()\n"
    "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"
)


def test_a_process_groups_cpu_and_memory_are_read_from_proc() -> None:
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            BURN_THEN_SLEEP,
        ],
        start_new_session=True,  # its own process group, as a local machine's
    )
    try:
        deadline = time.monotonic() + 10
        usage = group_usage(burner.pid)
        while usage.cpu_seconds < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
            usage = group_usage(burner.pid)
        assert 0.25 <= usage.cpu_seconds < 5
        assert 1_000_000 < usage.memory_bytes < 1_000_000_000  # a Python interpreter's RSS
        assert group_usage(os.getpgrp()).cpu_seconds > 0  # this test's own group, not its
    finally:
        burner.kill()
        burner.wait()


def test_proc_stat_and_cpu_stat_parse() -> None:
    # A command name with a space and a parenthesis, as /proc writes it.
    stat = "42 (a b) c) S 1 42 42 0 -1 0 0 0 0 0 100 50 7 3 20 0 1 0 5 1000 250 rest"
    assert parse_proc_stat(stat) == (42, 160, 250, 1)
    assert cpu_seconds_v2("usage_usec 2500000\nuser_usec 2000000\n") == 2.5
    with pytest.raises(ValueError):
        cpu_seconds_v2("user_usec 1\n")


def test_machine_series_follow_the_machines_that_exist() -> None:
    metrics = NullMetrics()
    metrics.machines([MachineSample("m1", 1.5, 100), MachineSample("m2", 2.0, 200, 3)])
    metrics.machines([MachineSample("m2", 2.5, 300, 4)], complete=True)
    _, samples = parse(metrics.registry.render())
    assert sample(samples, "preview_machine_cpu_seconds_total", machine="m1") is None
    assert sample(samples, "preview_machine_cpu_seconds_total", machine="m2") == 2.5
    assert sample(samples, "preview_machine_memory_bytes", machine="m2") == 300
    assert sample(samples, "preview_machine_devserver_restarts_total", machine="m2") == 4


class _Deps:
    def __init__(self) -> None:
        self.metrics = NullMetrics()


async def test_jobs_are_timed_failures_counted_and_ticks_beat() -> None:
    ctx: dict[str, Any] = {"deps": _Deps()}

    async def resize(ctx: dict[str, Any]) -> str:
        return "ok"

    async def recycle(ctx: dict[str, Any], fail: str) -> None:
        if fail == "retry":
            raise Retry(defer=1)
        raise RuntimeError("boom")

    before = time.time()
    assert await timed(resize, tick=True)(ctx) == "ok"
    with pytest.raises(Retry):
        await timed(recycle)(ctx, "retry")
    with pytest.raises(RuntimeError):
        await timed(recycle)(ctx, "boom")
    _, samples = parse(ctx["deps"].metrics.registry.render())
    assert sample(samples, "preview_job_duration_seconds_count", job="resize") == 1
    assert sample(samples, "preview_job_duration_seconds_count", job="recycle") == 2
    assert sample(samples, "preview_job_failures_total", job="recycle") == 1  # not the Retry
    assert sample(samples, "preview_job_failures_total", job="resize") is None
    beat = sample(samples, "preview_worker_heartbeat_timestamp_seconds")
    assert beat is not None and before <= beat <= time.time()


def test_the_outage_log_sets_store_up() -> None:
    metrics = NullMetrics()
    outages = OutageLog(observe=lambda store, up: metrics.store_up(store.name.lower(), up))
    outages.down(Store.REDIS, ConnectionError("refused"))
    outages.up(Store.POSTGRES)
    _, samples = parse(metrics.registry.render())
    assert sample(samples, "preview_store_up", store="redis") == 0
    assert sample(samples, "preview_store_up", store="postgres") == 1
    outages.up(Store.REDIS)
    _, samples = parse(metrics.registry.render())
    assert sample(samples, "preview_store_up", store="redis") == 1
