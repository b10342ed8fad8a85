"""The pool history: the worker's sampler writes every pool's counts to real Redis and
GET /api/admin/pool/history reads them back for the dashboard (admins only, bad input refused
with nothing read)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis

from app.server import create_app
from app.settings import Settings
from pool.core.pool_history import HISTORY_SECONDS, PoolSample
from pool.providers.local import LocalProvider
from pool.services.refill import RefillSettings
from pool.store.inventory import PoolKey
from pool.store.keys import Keys
from pool.store.pool_history import PoolHistory
from tests.conftest import REDIS_URL, User, make_user
from tests.integration.helpers import POOL, fill_ready
from workers import jobs
from workers.config import WorkerConfig
from workers.context import WorkerContext
from workers.settings import build_worker

OTHER = PoolKey("react-web", "nowhere")  # a default pool with no machine yet: sampled as zeros


@pytest.fixture
async def ctx(settings: Settings, tmp_path: Path, arq: ArqRedis) -> AsyncIterator[dict[str, Any]]:
    config = WorkerConfig(
        database_url=settings.database_url or "",
        redis_url=REDIS_URL,
        provider_factory=lambda _redis: LocalProvider(tmp_path / "provider"),
        default_pools=[POOL, OTHER],
        default_bounds=(0, 4),
        refill=RefillSettings(refill_seconds=5.0, headroom=0.5, boot_timeout=20.0),
        pending_ttl_ms=10_000,
        ondemand_max=2,
        reap_interval_seconds=5,
    )
    deps = await WorkerContext.open(config, arq)
    try:
        yield {"deps": deps, "redis": arq}
    finally:
        await deps.close()


async def test_the_worker_samples_every_ten_seconds(ctx: dict[str, Any]) -> None:
    worker = build_worker(ctx["deps"].config)
    try:
        [sampler] = [c for c in worker.cron_jobs if c.name == "cron:sample_pools"]
        assert sampler.second == set(range(0, 60, 10))
        assert sampler.unique and sampler.run_at_startup
    finally:
        await worker.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


@pytest.fixture
def admin(settings: Settings) -> User:
    return make_user(settings.database_url or "", admin=True)


def _pool_samples(body: dict[str, Any], pool: PoolKey) -> list[dict[str, Any]]:
    return [
        s for s in body["samples"] if (s["template"], s["region"]) == (pool.template, pool.region)
    ]


async def test_the_sampler_records_each_pool_and_the_route_charts_a_lease(
    settings: Settings,
    ctx: dict[str, Any],
    api: httpx.AsyncClient,
    admin: User,
    redis_client: aioredis.Redis,
) -> None:
    await fill_ready(redis_client, 2)
    assert await jobs.sample_pools(ctx) == 2  # POOL and the default pool OTHER

    # A lease through the API: one machine leaves the ready list, and the pool counts a hit.
    leased = await api.post(
        "/api/preview/sessions", json={"projectId": str(admin.project_id)}, headers=admin.headers
    )
    assert leased.status_code == 201, leased.text
    assert await jobs.sample_pools(ctx) == 2

    answer = await api.get("/api/admin/pool/history?minutes=60", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    before, after = _pool_samples(answer.json(), POOL)
    assert before["ready"] == {"hot": 2, "suspended": 0, "stopped": 0}
    assert (before["leased"], before["booting"], before["hitRatio"]) == (0, 0, None)
    assert after["ready"]["hot"] == 1 and after["leased"] == 1
    assert after["hitRatio"] == 1.0
    assert before["at"] <= after["at"]
    [idle, _] = _pool_samples(answer.json(), OTHER)
    assert idle["ready"]["hot"] == 0 and idle["hitRatio"] is None


async def test_history_keeps_the_last_hour_and_minutes_narrows_it(
    api: httpx.AsyncClient, admin: User, redis_client: aioredis.Redis
) -> None:
    history = PoolHistory(redis_client)
    now = time.time()
    ages = [HISTORY_SECONDS + 30, 50 * 60, 20 * 60, 60]  # seconds before now

    def sample(age: float) -> PoolSample:
        return PoolSample(now - age, POOL.template, POOL.region, int(age), 0, 0, 0, 0, 0, 0)

    await history.record([sample(age) for age in ages], now)
    kept = await redis_client.zcard(Keys().pool_history)
    assert kept == 3  # the sample older than an hour was trimmed on the write
    assert 0 < await redis_client.ttl(Keys().pool_history) <= HISTORY_SECONDS

    hour = (await api.get("/api/admin/pool/history", headers=admin.headers)).json()
    assert [s["ready"]["hot"] for s in hour["samples"]] == [50 * 60, 20 * 60, 60]
    recent = await api.get("/api/admin/pool/history?minutes=30", headers=admin.headers)
    assert [s["ready"]["hot"] for s in recent.json()["samples"]] == [20 * 60, 60]


@pytest.mark.parametrize(
    "query",
    ["minutes=0", "minutes=61", "minutes=-5", "minutes=ten", "minutes=1.5", "minutes=", "hours=1"],
)
async def test_bad_minutes_are_refused(api: httpx.AsyncClient, admin: User, query: str) -> None:
    answer = await api.get(f"/api/admin/pool/history?{query}", headers=admin.headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_query"
    assert answer.json()["message"]


async def test_only_operators_read_the_history(
    settings: Settings, api: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    user = make_user(settings.database_url or "")
    refused = await api.get("/api/admin/pool/history", headers=user.headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert (await api.get("/api/admin/pool/history")).status_code == 401
    assert await redis_client.exists(Keys().pool_history) == 0


async def test_the_history_is_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    document = (await api.get("/api/openapi.json")).json()
    operation = document["paths"]["/api/admin/pool/history"]["get"]
    [minutes] = operation["parameters"]
    assert (minutes["name"], minutes["schema"]["minimum"], minutes["schema"]["maximum"]) == (
        "minutes",
        1,
        60,
    )
    assert {"200", "400", "401", "403"} <= set(operation["responses"])
