"""Leasing under concurrency, through two real `preview-orchestrator web` processes that share
one Postgres and one Redis: each machine is leased once, quotas hold, the creation rate holds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
from redis.asyncio import Redis

from app.settings import Settings
from pool.store.redis_errors import resolved
from tests.conftest import User, make_user
from tests.integration.helpers import POOL, fill_ready, web_processes

SESSIONS = "/api/preview/sessions"
START_TIMEOUT = 30.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def web_urls(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two web processes on their own ports; terminated (and waited for) whatever happens."""
    # An empty pool answers 503, never 202.
    with web_processes(
        database_url, tmp_path_factory.mktemp("web"), 2, {"PREVIEW_ONDEMAND_MAX": "0"}
    ) as urls:
        yield urls


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        timeout=30.0, trust_env=False, limits=httpx.Limits(max_connections=250)
    ) as client:
        yield client


def _create(client: httpx.AsyncClient, base: str, user: User) -> asyncio.Task[httpx.Response]:
    return asyncio.ensure_future(
        client.post(
            f"{base}{SESSIONS}", json={"projectId": str(user.project_id)}, headers=user.headers
        )
    )


def _live_count(database_url: str, user_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM preview_sessions "
            "WHERE user_id = %s AND status IN ('booting', 'active')",
            (user_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_200_leases_from_50_users_on_two_processes_take_each_machine_once(
    settings: Settings, web_urls: list[str], redis_client: Redis, http: httpx.AsyncClient
) -> None:
    database_url = settings.database_url or ""
    machines = set(await fill_ready(redis_client, 5))
    users = [make_user(database_url) for _ in range(50)]

    responses = await asyncio.gather(
        *(_create(http, web_urls[i % 2], users[i % 50]) for i in range(200))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 5, statuses
    assert set(statuses) <= {201, 429, 503}, [r.text for r in responses if r.status_code >= 500]
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"] == "pool_exhausted"
    leased = [r.json()["machineId"] for r in responses if r.status_code == 201]
    assert len(set(leased)) == 5 and set(leased) == machines

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT machine_id, kind FROM machine_leases WHERE released_at IS NULL"
        ).fetchall()
        active = conn.execute(
            "SELECT count(*) FROM preview_sessions WHERE status = 'active'"
        ).fetchone()
    assert len(rows) == 5
    assert {machine for machine, _ in rows} == machines
    assert {kind for _, kind in rows} == {"lease"}
    assert active == (5,)

    leftover = await resolved(redis_client.lrange(f"po:ready:{POOL}", 0, -1))
    assert leftover == [], [
        (m, await resolved(redis_client.hgetall(f"po:m:{m}"))) for m in leftover
    ]
    states = [await resolved(redis_client.hget(f"po:m:{m}", "state")) for m in machines]
    assert states == ["leased"] * 5
    assert await redis_client.zcard("po:pending") == 0


async def _watch_live(database_url: str, user_id: uuid.UUID, stop: asyncio.Event) -> int:
    """The most live sessions Postgres ever showed for the user while `stop` was unset."""
    peak = 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while not stop.is_set():
            cursor = await conn.execute(
                "SELECT count(*) FROM preview_sessions "
                "WHERE user_id = %s AND status IN ('booting', 'active')",
                (user_id,),
            )
            row = await cursor.fetchone()
            assert row is not None
            peak = max(peak, int(row[0]))
            await asyncio.sleep(0.002)
    return peak


def _assert_over_limit(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "quota_exceeded"
    assert int(response.headers["Retry-After"]) >= 1


async def test_concurrent_session_quota_is_never_exceeded(
    settings: Settings, web_urls: list[str], redis_client: Redis, http: httpx.AsyncClient
) -> None:
    database_url = settings.database_url or ""
    limit = 3  # the free plan; the creation rate is set high so only this limit applies
    await fill_ready(redis_client, 40)
    user = make_user(database_url, per_minute=10000, burst=1000)
    live: list[str] = []
    created_total = 0

    for round_no in range(6):
        live_before = _live_count(database_url, user.id)
        assert live_before == len(live)
        to_delete, live = live[: round_no % 3], live[round_no % 3 :]
        interleaved = round_no % 2 == 1
        if not interleaved:  # deletes first: the POSTs must then fill the plan exactly
            for sid in to_delete:
                deleted = await http.delete(f"{web_urls[0]}{SESSIONS}/{sid}", headers=user.headers)
                assert deleted.status_code == 204

        stop = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_live(database_url, user.id, stop))
        posts = [_create(http, web_urls[i % 2], user) for i in range(20)]
        deletes = [
            asyncio.ensure_future(
                http.delete(f"{web_urls[j % 2]}{SESSIONS}/{sid}", headers=user.headers)
            )
            for j, sid in enumerate(to_delete if interleaved else [])
        ]
        responses = await asyncio.gather(*posts)
        assert all(d.status_code == 204 for d in await asyncio.gather(*deletes))
        stop.set()
        peak = await watcher

        created = [r for r in responses if r.status_code == 201]
        for response in responses:
            if response.status_code != 201:
                _assert_over_limit(response)
        free_slots = limit - live_before + len(to_delete)
        if interleaved:
            assert len(created) <= free_slots, (round_no, live_before, len(created))
        else:
            assert len(created) == free_slots, (round_no, live_before, len(created))
        assert peak <= limit, f"round {round_no}: {peak} live sessions seen"
        live += [r.json()["id"] for r in created]
        created_total += len(created)
        assert _live_count(database_url, user.id) == len(live) <= limit
        assert await resolved(redis_client.scard(f"po:user:{user.id}")) == len(live)

    assert created_total > limit  # the deletes did free slots that were taken again


async def test_creation_rate_limit_answers_429_with_retry_after(
    settings: Settings, web_urls: list[str], redis_client: Redis, http: httpx.AsyncClient
) -> None:
    await fill_ready(redis_client, 3)
    user = make_user(settings.database_url or "", per_minute=6, burst=2)

    first = await _create(http, web_urls[0], user)
    second = await _create(http, web_urls[1], user)
    third = await _create(http, web_urls[0], user)

    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert third.status_code == 429, third.text
    assert third.json()["error"] == "rate_limited"
    # One creation per 10 s: the next one is allowed about 10 s from now.
    assert 1 <= int(third.headers["Retry-After"]) <= 10
    # The refused create left nothing behind: no session, no machine taken, no quota slot.
    assert _live_count(settings.database_url or "", user.id) == 2
    assert await resolved(redis_client.llen(f"po:ready:{POOL}")) == 1
    assert await resolved(redis_client.scard(f"po:user:{user.id}")) == 2
