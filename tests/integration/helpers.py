"""Helpers shared by the lease, fencing, migration and worker-job integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from redis.asyncio import Redis

from pool.providers.local import LocalProvider
from pool.store.inventory import Inventory, PoolKey
from tests.conftest import ADMIN_URL, JWT_SECRET, REDIS_URL, TOKEN_SECRET, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("preview-orchestrator")
POOL = PoolKey("react-web", "local")
WEB_START_TIMEOUT = 30.0


async def fill_ready(redis: Redis, count: int, pool: PoolKey = POOL) -> list[str]:
    """Register `count` ready machines (no processes: the lease path never calls the provider).
    The async twin of tests.conftest.fill_pool, for tests already inside an event loop."""
    inventory = Inventory(redis)
    ids = [f"test-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for machine_id in ids:
        await inventory.mark_booting(machine_id, pool, f"token-of-{machine_id}")
        await inventory.make_ready(machine_id, pool, f"http://127.0.0.1:1/{machine_id}")
    return ids


def make_idle(database_url: str, session_id: uuid.UUID) -> None:
    """Move the session's last activity past its idle timeout: the reaper's next tick ends it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE preview_sessions "
            "SET last_activity = now() - make_interval(secs => idle_timeout_seconds + 60) "
            "WHERE id = %s",
            (session_id,),
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always waits, so nothing is left behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def destroy_all_machines(base_dir: Path) -> None:
    """Destroy every local machine under `base_dir`, whichever provider instance spawned it,
    and reap the ones this process spawned so no zombie outlives the test."""
    provider = LocalProvider(base_dir)
    try:
        for machine in await provider.list():
            pid = machine.metadata.get("pid")
            await provider.destroy(machine.id)
            if pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(pid), os.WNOHANG)
    finally:
        await provider.aclose()


def database_url_for(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def create_database(name: str) -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url_for(name)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + WEB_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"web process exited with {process.returncode}:\n{log.read_text()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"web process at {url} not healthy in time:\n{log.read_text()}")


@contextlib.contextmanager
def web_processes(
    database_url: str, data_dir: Path, count: int, extra_env: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """`count` real `preview-orchestrator web` processes sharing the test stores; yields their
    base URLs and always stops them."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(data_dir),
        "PREVIEW_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    processes: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for index in range(count):
            port = free_port()
            log = data_dir / f"web{index}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(CLI), "web", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    cwd=REPO_ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, log in processes:
            _wait_healthy(process, url, log)
        yield [url for _, url, _ in processes]
    finally:
        for process, _, _ in processes:
            stop_process(process)
