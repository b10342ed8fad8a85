"""The in-process alert evaluator against a real HTTP receiver: it fires once, does not repeat
itself (nor does a second process), resends what the webhook refused, and resolves. Conditions
are made in the real Redis (leases on an empty pool, ready machines) and the process's metrics;
a Postgres nobody listens on is a real unavailable store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from pool.core.alert_rules import POOL_EXHAUSTED
from pool.services.alerts import AlertEvaluator, alerts_view, evaluating_alerts
from pool.services.metrics import Metrics, NullMetrics
from pool.store.alert_store import AlertStore
from pool.store.leasing import LeaseBroker, Leased, LeaseRequest, PoolEmpty
from sql.database import open_pool
from tests.conftest import claimed_redis_url, free_port, make_user
from tests.integration.helpers import POOL, fill_ready

T0 = 1_800_000_000.0


@dataclass
class Receiver:
    url: str
    got: list[dict[str, Any]] = field(default_factory=list)
    refuse: int = 0  # answer 500 to this many posts first

    def texts(self) -> list[str]:
        return [str(message["text"]).splitlines()[0] for message in self.got]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        if box.refuse:
            box.refuse -= 1
            return JSONResponse({"ok": False}, status_code=500)
        box.got.append(await request.json())
        return Response("ok")

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield box
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    assert settings.database_url
    pool = await open_pool(settings.database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _lease_on_empty_pool(redis: Redis, metrics: Metrics, count: int) -> None:
    """Leases that find no machine, as the lease path makes them: Redis counts a miss, the web
    process's metrics an `exhausted` answer."""
    broker = LeaseBroker(redis, pending_ttl_ms=30_000, ondemand_max=0)
    for _ in range(count):
        request = LeaseRequest(POOL.template, POOL.region, uuid.uuid4(), uuid.uuid4(), 5, 600, 100)
        outcome = await broker.lease(request)
        assert isinstance(outcome, PoolEmpty), outcome
        metrics.lease(POOL.template, POOL.region, "exhausted")


async def _tick(evaluator: AlertEvaluator, metrics: Metrics, at: float) -> list[str]:
    metrics.worker_tick(at)  # a live worker: the heartbeat rule stays quiet
    report = await evaluator.tick(at)
    assert report.evaluated
    return report.firing


async def test_fires_once_deduplicates_and_resolves(
    redis_client: Redis, db: AsyncConnectionPool, receiver: Receiver
) -> None:
    metrics = NullMetrics()
    evaluator = AlertEvaluator(redis_client, db, metrics, receiver.url)
    # A second process (its own metrics, the same Redis): it must not announce it again.
    other_metrics = NullMetrics()
    other = AlertEvaluator(redis_client, db, other_metrics, receiver.url)
    machines = await fill_ready(redis_client, 1)
    broker = LeaseBroker(redis_client, pending_ttl_ms=30_000, ondemand_max=0)
    first = await broker.lease(
        LeaseRequest(POOL.template, POOL.region, uuid.uuid4(), uuid.uuid4(), 5, 600, 100)
    )
    assert isinstance(first, Leased) and first.machine_id == machines[0]  # the pool is empty now

    assert await _tick(evaluator, metrics, T0) == []
    await _lease_on_empty_pool(redis_client, metrics, 3)

    # Pending for the rule's `for:` (2 minutes), then firing, announced once.
    assert await _tick(evaluator, metrics, T0 + 30) == []
    assert await _tick(evaluator, metrics, T0 + 90) == []
    assert receiver.got == []
    key = f"{POOL_EXHAUSTED.name}|template={POOL.template}|region={POOL.region}"
    assert await _tick(evaluator, metrics, T0 + 160) == [key]
    assert receiver.texts() == [
        f"FIRING [critical] PreviewPoolExhausted: Pool {POOL.template}/{POOL.region} is exhausted"
    ]
    assert receiver.got[0]["alert"]["status"] == "fired"
    assert "docs/operations.md#previewpoolexhausted" in receiver.got[0]["text"]

    assert await _tick(evaluator, metrics, T0 + 190) == [key]
    other_metrics.worker_tick(T0 + 200)
    assert (await other.tick(T0 + 200)).firing == [key]
    assert len(receiver.got) == 1

    view = await alerts_view(AlertStore(redis_client))
    assert [(a["name"], a["severity"]) for a in view["firing"]] == [
        ("PreviewPoolExhausted", "critical")
    ]
    assert view["firing"][0]["since"].startswith("2027-01-15T08:")  # T0 + 160, ISO-8601
    assert view["recent"] == []

    # A ready machine again and no more 503s: once the window has moved past them, resolved.
    await fill_ready(redis_client, 1)
    assert await _tick(evaluator, metrics, T0 + 300) == [key]  # still inside the window
    assert await _tick(evaluator, metrics, T0 + 520) == []
    assert receiver.texts()[1].startswith("RESOLVED PreviewPoolExhausted: Pool react-web/local")
    assert receiver.got[1]["alert"]["status"] == "resolved"
    assert await _tick(evaluator, metrics, T0 + 550) == []
    assert len(receiver.got) == 2
    recent = (await alerts_view(AlertStore(redis_client)))["recent"]
    assert [(r["name"], r["firedAt"] < r["resolvedAt"]) for r in recent] == [
        ("PreviewPoolExhausted", True)
    ]


async def test_a_refused_message_is_sent_again(
    redis_client: Redis, db: AsyncConnectionPool, receiver: Receiver
) -> None:
    metrics = NullMetrics()
    evaluator = AlertEvaluator(redis_client, db, metrics, receiver.url)
    await fill_ready(redis_client, 2)
    # Reconcile destroyed an orphan (the worker's counter): fires at once (`for: 0s`).
    assert await _tick(evaluator, metrics, T0) == []
    metrics.reconciled({"orphans_destroyed": 1})
    receiver.refuse = 1
    assert await _tick(evaluator, metrics, T0 + 30) == ["PreviewOrphansFound"]
    assert receiver.got == []  # refused: still queued
    assert await _tick(evaluator, metrics, T0 + 60) == ["PreviewOrphansFound"]
    assert receiver.texts() == [
        "FIRING [warning] PreviewOrphansFound: Orphan machines destroyed by reconcile: 1"
    ]


async def test_postgres_down_and_a_silent_worker(redis_client: Redis, receiver: Receiver) -> None:
    """A Postgres nobody listens on, and no worker heartbeat at all: both critical alerts."""
    nowhere = AsyncConnectionPool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        open=False,
        min_size=0,
        max_size=1,
        timeout=0.5,
        reconnect_timeout=1,
    )
    await nowhere.open(wait=False)
    try:
        evaluator = AlertEvaluator(redis_client, nowhere, NullMetrics(), receiver.url)
        assert (await evaluator.tick(T0)).firing == []
        firing = (await evaluator.tick(T0 + 61)).firing
    finally:
        await nowhere.close()
    assert firing == ["PreviewStoreDown|store=postgres", "PreviewWorkerHeartbeatStale"]
    assert sorted(receiver.texts()) == [
        "FIRING [critical] PreviewStoreDown: postgres is unavailable",
        "FIRING [critical] PreviewWorkerHeartbeatStale: No worker has ticked for over a minute",
    ]


async def test_redis_down_is_told_once_by_the_process(receiver: Receiver) -> None:
    gone: Redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    pool = AsyncConnectionPool("postgresql://unused", open=False)
    try:
        evaluator = AlertEvaluator(gone, pool, NullMetrics(), receiver.url)
        for at in (T0, T0 + 30, T0 + 61, T0 + 90):
            assert not (await evaluator.tick(at)).evaluated
    finally:
        await gone.aclose()
    assert [t.split(" (seen by")[0] for t in receiver.texts()] == [
        "FIRING [critical] PreviewStoreDown: redis is unavailable"
    ]


def test_admin_alerts_route_reads_the_evaluators_state(settings: Settings) -> None:
    admin, someone = (
        make_user(settings.database_url or "", admin=True),
        make_user(settings.database_url or ""),
    )

    async def postgres_goes_away() -> None:
        redis: Redis = Redis.from_url(claimed_redis_url(), decode_responses=True)
        nowhere = AsyncConnectionPool(
            f"postgresql://postgres@127.0.0.1:{free_port()}/none",
            open=False,
            min_size=0,
            max_size=1,
            timeout=0.5,
        )
        await nowhere.open(wait=False)
        try:
            metrics = NullMetrics()
            evaluator = AlertEvaluator(redis, nowhere, metrics, None)  # no webhook: state only
            for at in (T0, T0 + 61):
                metrics.worker_tick(at)
                await evaluator.tick(at)
        finally:
            await nowhere.close()
            await redis.aclose()

    with TestClient(create_app(settings)) as client:
        assert client.get("/api/admin/alerts", headers=someone.headers).status_code == 403
        empty = client.get("/api/admin/alerts", headers=admin.headers)
        assert empty.status_code == 200 and empty.json() == {"firing": [], "recent": []}
        asyncio.run(postgres_goes_away())
        answer = client.get("/api/admin/alerts", headers=admin.headers).json()
    assert answer == {
        "firing": [
            {
                "name": "PreviewStoreDown",
                "severity": "critical",
                "summary": "postgres is unavailable",
                "since": "2027-01-15T08:01:01+00:00",
            }
        ],
        "recent": [],
    }


async def test_the_web_servers_loop_ticks_until_closed(
    redis_client: Redis, db: AsyncConnectionPool
) -> None:
    evaluator = AlertEvaluator(redis_client, db, NullMetrics(), None)
    async with evaluating_alerts(evaluator, every=0.05):
        for _ in range(100):
            if len(await evaluator.store.history()) >= 2:
                break
            await asyncio.sleep(0.05)
    ticks = len(await evaluator.store.history())
    assert ticks >= 2
    await asyncio.sleep(0.2)
    assert len(await evaluator.store.history()) == ticks  # stopped with the context
