"""The worker through store outages: a real `worker` process (and a real `dev`) reaching Redis
and Postgres through TCP proxies that the test cuts and restores.

What must hold (docs/architecture.md, "Store outages"): the process keeps running; each outage
is logged once when it begins and once when it ends; queued jobs and the cron run again once the
store is back; `dev` restarts its worker and, on SIGTERM, still destroys its local machines.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.settings import Settings
from pool.providers.local import LocalProvider
from tests.conftest import JWT_SECRET, REDIS_URL, TOKEN_SECRET, free_port
from tests.faults.tcp_proxy import tcp_proxy
from tests.integration.helpers import CLI, REPO_ROOT, destroy_all_machines, stop_process

pytestmark = pytest.mark.slow

HEALTH_KEY = "arq:queue:health-check"
QUEUE = "arq:queue"
START_TIMEOUT = 30.0
# After a store is back: the supervisor's (or a waiting job's) backoff is capped at 10 s.
RESUME_BOUND = 15.0


def _wait(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _count(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text)


@pytest.fixture
def store() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _env(settings: Settings, database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(data_dir),
        "PREVIEW_LOCAL_PLACEHOLDER": "true",
        "PREVIEW_LOG_LEVEL": "info",
        "PREVIEW_DB_ACQUIRE_TIMEOUT_SECONDS": "1",
    }


def _enqueue_resize(store: redis.Redis) -> str:
    """Queue a resize job as the API does (through arq), on the real Redis."""
    import asyncio

    from arq.connections import RedisSettings, create_pool

    job_id = f"resize:fault-{uuid.uuid4().hex[:8]}"

    async def enqueue() -> None:
        pool = await create_pool(RedisSettings.from_dsn(REDIS_URL))
        try:
            assert await pool.enqueue_job("resize", _job_id=job_id) is not None
        finally:
            await pool.aclose()

    asyncio.run(enqueue())
    return job_id


def _job_done(store: redis.Redis, job_id: str) -> bool:
    # keep_result=0: a finished job leaves neither its key nor its queue entry behind.
    return store.zscore(QUEUE, job_id) is None and not store.exists(f"arq:job:{job_id}")


def test_worker_survives_redis_and_postgres_outages(
    settings: Settings, store: redis.Redis, tmp_path: Path
) -> None:
    database_url = settings.database_url or ""
    log = tmp_path / "worker.log"
    with (
        tcp_proxy(REDIS_URL) as redis_proxy,
        tcp_proxy(database_url) as pg_proxy,
        log.open("wb") as out,
    ):
        env = _env(settings, pg_proxy.url(database_url), redis_proxy.url(REDIS_URL), tmp_path)
        env |= {"PREVIEW_POOL_MIN": "0", "PREVIEW_POOL_MAX": "0"}
        worker = subprocess.Popen(
            [str(CLI), "worker"], env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            _wait(lambda: bool(store.exists(HEALTH_KEY)), START_TIMEOUT, "worker up", log)

            # Redis goes away: arq's Worker stops; the process must not.
            redis_proxy.cut()
            _wait(lambda: _count(log, "Redis is unavailable (") == 1, 10, "outage logged", log)
            store.delete(HEALTH_KEY)
            time.sleep(3)
            assert worker.poll() is None, f"the worker exited:\n{_tail(log)}"
            redis_proxy.restore()
            _wait(lambda: bool(store.exists(HEALTH_KEY)), RESUME_BOUND, "worker back", log)
            job = _enqueue_resize(store)
            _wait(lambda: _job_done(store, job), RESUME_BOUND, "a job after Redis", log)
            assert _count(log, "Redis is available again") == 1, _tail(log)

            # Postgres goes away: jobs wait for it, the cron skips its ticks.
            pg_proxy.cut()
            job = _enqueue_resize(store)
            _wait(lambda: _count(log, "Postgres is unavailable (") == 1, 10, "outage logged", log)
            time.sleep(3)
            assert not _job_done(store, job), "the job ran without Postgres"
            assert worker.poll() is None, f"the worker exited:\n{_tail(log)}"
            pg_proxy.restore()
            _wait(lambda: _job_done(store, job), RESUME_BOUND, "a job after Postgres", log)
            _wait(lambda: _count(log, "Postgres is available again") == 1, 5, "recovery log", log)
            # Once per outage: however many polls, ticks and jobs failed in between.
            assert _count(log, "is unavailable (") == 2, _tail(log, 80)
            assert _count(log, "is available again") == 2, _tail(log, 80)
            assert _count(log, "Traceback") == 0, _tail(log, 80)
            assert worker.poll() is None
        finally:
            stop_process(worker)
            out.flush()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "dev"
    path.mkdir()
    try:
        yield path
    finally:
        import asyncio

        asyncio.run(destroy_all_machines(path))


def _local_machines(data_dir: Path) -> list[str]:
    import asyncio

    async def listed() -> list[str]:
        provider = LocalProvider(data_dir)
        try:
            return [m.id for m in await provider.list()]
        finally:
            await provider.aclose()

    return asyncio.run(listed())


def _ready(base: str) -> dict[str, str] | None:
    try:
        answer = httpx.get(f"{base}/readyz", timeout=3.0, trust_env=False)
    except httpx.HTTPError:
        return None
    checks: dict[str, str] = answer.json()["checks"]
    return checks


def test_dev_restarts_its_worker_and_still_cleans_up(
    settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    database_url = settings.database_url or ""
    log = tmp_path / "dev.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tcp_proxy(REDIS_URL) as redis_proxy, log.open("wb") as out:
        env = _env(settings, database_url, redis_proxy.url(REDIS_URL), data_dir)
        env |= {"PREVIEW_TEMPLATES": "react-web", "PREVIEW_POOL_MIN": "1", "PREVIEW_POOL_MAX": "1"}
        dev = subprocess.Popen(
            [str(CLI), "dev", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: _ready(base) == _all_ok(), 90, "dev ready", log)
            _wait(lambda: len(_local_machines(data_dir)) == 1, 60, "a local machine", log)

            redis_proxy.cut()
            _wait(
                lambda: _count(log, "Redis is unavailable (") == 1, 10, "worker death logged", log
            )
            time.sleep(2)
            redis_proxy.restore()
            _wait(
                lambda: _count(log, "Redis is available again") == 1, RESUME_BOUND, "restart", log
            )
            _wait(lambda: _ready(base) == _all_ok(), RESUME_BOUND, "ready again", log)
            assert dev.poll() is None, _tail(log)

            # Teardown destroys the local machines, whatever the worker went through.
            assert len(_local_machines(data_dir)) == 1
            stop_process(dev, timeout=45)
            assert "stopped 1 local preview machine(s)" in log.read_text(), _tail(log)
            assert _local_machines(data_dir) == []
        finally:
            stop_process(dev)


def _all_ok() -> dict[str, str]:
    return {"postgres": "ok", "redis": "ok", "worker": "ok"}
