"""A killed worker's jobs run again within minutes: arq keeps a running job's in-progress mark
for the longest timeout of any job plus 10 s, so no job's timeout may exceed the configured
bound (it once was an hour, for the rolling guest resize)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pool.providers.local import LocalProvider
from pool.services.refill import RefillSettings
from pool.store.inventory import PoolKey
from workers.config import WorkerConfig
from workers.settings import build_worker


def _config(job_timeout_seconds: int) -> WorkerConfig:
    return WorkerConfig(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        redis_url="redis://127.0.0.1:1/0",
        provider_factory=lambda _redis: LocalProvider(Path("/nonexistent")),  # never called
        default_pools=[PoolKey("react-web", "local")],
        default_bounds=(1, 2),
        refill=RefillSettings(refill_seconds=5.0, headroom=0.5),
        pending_ttl_ms=10_000,
        ondemand_max=2,
        job_timeout_seconds=job_timeout_seconds,
    )


# Async: arq's Worker takes the running event loop (a sync test would leave it one of its own,
# never closed).
@pytest.mark.parametrize("bound", [10, 180, 600])
async def test_no_job_outlives_the_bound(bound: int) -> None:
    worker = build_worker(_config(bound))

    timeouts = {name: f.timeout_s for name, f in worker.functions.items()}
    assert max(t or 0 for t in timeouts.values()) == bound, timeouts
    assert worker.in_progress_timeout_s == bound + 10
