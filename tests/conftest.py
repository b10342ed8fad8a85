"""Shared fixtures: a fresh Postgres database per test run and a Redis database flushed per
test, both on the real servers this machine runs (never mocks of them).

TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres) names a server where
the tests may create and drop databases. The Redis database is claimed for this run on
TEST_REDIS_SERVER (tests/redis_claim.py), so that two runs on one host never share one, when
first used: the unit tests need neither store. TEST_REDIS_URL names a database to use (and
flush) instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

from app.auth import mint_hs256_token
from app.settings import Settings, load_settings
from sql.migrate import apply_migrations
from sql.sessions import NewSession
from tests.redis_claim import flush as flush_redis
from tests.redis_claim import redis_url

# Every `web` and `worker` the tests start would serve /metrics on 9091 (PREVIEW_METRICS_PORT's
# default): two at once, or two test runs on one host, would collide. Off unless a test that
# scrapes gives a port of its own.
os.environ.setdefault("PREVIEW_METRICS_PORT", "0")

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def claimed_redis_url() -> str:
    """The run's Redis database, claimed on first use (the same one on every call)."""
    return redis_url("TEST_REDIS_URL", "tests")


def __getattr__(name: str) -> str:
    # `from tests.conftest import REDIS_URL` claims the database then, not this module's
    # import: the unit tests (the fast lane, `pytest tests/unit`) run with no Redis at all.
    if name == "REDIS_URL":
        return claimed_redis_url()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Every async test runs with this fixture first (so it is torn down last, after the test's own
# fixtures closed what they opened): a task the code under test started and never awaited or
# cancelled fails the test, as kopf's `_no_asyncio_pending_tasks` does. Left alone, pytest-asyncio
# would cancel it silently with the test's loop, and the bug (a socket's reader outliving the
# socket, a fire-and-forget publish) would only show in production.
LEAK_GRACE_SECONDS = 1.0


@pytest.fixture
async def _no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked = {t for t in asyncio.all_tasks() - before if t is not current and not t.done()}
    if leaked:  # a task finishing its own teardown (a close handshake) gets a moment
        _, leaked = await asyncio.wait(leaked, timeout=LEAK_GRACE_SECONDS)
    if leaked:
        names = sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked)
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"the test left {len(leaked)} asyncio task(s) running: {names}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(item.obj):
            item.fixturenames.insert(0, "_no_leaked_tasks")


JWT_SECRET = "test-jwt-secret-" + "x" * 32
TOKEN_SECRET = "test-session-token-secret-" + "y" * 32


def _database_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"po_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    asyncio.run(apply_migrations(url))
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clean_stores(database_url: str) -> Iterator[None]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE session_events, machine_leases, preview_sessions, user_quotas, "
            "pool_targets, project_members, projects, auth.users CASCADE"
        )
    flush_redis(claimed_redis_url())
    yield


@pytest.fixture
def settings(database_url: str, clean_stores: None, tmp_path: Path) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=claimed_redis_url(),
        supabase_jwt_secret=JWT_SECRET,
        preview_token_secret=TOKEN_SECRET,
        preview_data_dir=tmp_path / "data",
        preview_public_url="http://localhost:8000",
    )


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on the test Redis database, flushed for this test."""
    client: aioredis.Redis = aioredis.Redis.from_url(claimed_redis_url(), decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def arq(settings: Settings) -> AsyncIterator[ArqRedis]:
    """An arq pool on the test Redis database (jobs the code under test enqueues land here)."""
    pool = await create_pool(RedisSettings.from_dsn(claimed_redis_url()))
    try:
        yield pool
    finally:
        await pool.aclose()


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    project_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(
    database_url: str,
    *,
    admin: bool = False,
    max_concurrent: int | None = None,
    per_minute: int | None = None,
    burst: int | None = None,
) -> User:
    user_id, project_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s)",
            (user_id, f"{user_id.hex[:8]}@example.test"),
        )
        conn.execute(
            "INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, 'p')", (project_id, user_id)
        )
        if max_concurrent is not None or per_minute is not None or burst is not None:
            conn.execute(
                """INSERT INTO user_quotas (user_id, plan, max_concurrent_sessions,
                       creations_per_minute, creation_burst) VALUES (%s, 'free', %s, %s, %s)""",
                (user_id, max_concurrent, per_minute, burst),
            )
    token = mint_hs256_token(JWT_SECRET, user_id=user_id, admin=admin)
    return User(user_id, project_id, token)


def fill_pool(count: int, template: str = "react-web", region: str = "local") -> list[str]:
    """Register `count` ready machines directly in Redis (the lease path never calls the
    provider, so these need no processes)."""
    from pool.store.inventory import Inventory, PoolKey

    async def fill() -> list[str]:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(claimed_redis_url(), decode_responses=True)
        try:
            inventory = Inventory(client)
            ids = [f"test-{uuid.uuid4().hex[:10]}" for _ in range(count)]
            for machine_id in ids:
                await inventory.mark_booting(
                    machine_id, PoolKey(template, region), f"token-of-{machine_id}"
                )
                await inventory.make_ready(
                    machine_id, PoolKey(template, region), f"http://127.0.0.1:1/{machine_id}"
                )
            return ids
        finally:
            await client.aclose()

    return asyncio.run(fill())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def new_session(
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    project_id: uuid.UUID,
    template: str = "react-web",
    region: str = "local",
) -> NewSession:
    """A session row as the lease path records it, with the free plan's limits."""
    return NewSession(
        id=session_id,
        project_id=project_id,
        user_id=user_id,
        template=template,
        region=region,
        device_type="web",
        config={},
        max_session_seconds=3600,
        idle_timeout_seconds=900,
    )
