"""Helpers shared by the lease, fencing, migration and worker-job integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from redis.asyncio import Redis

from pool.inventory import Inventory, PoolKey
from pool.providers.local import LocalProvider
from tests.conftest import ADMIN_URL

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("preview-orchestrator")
POOL = PoolKey("react-web", "local")


async def fill_ready(redis: Redis, count: int, pool: PoolKey = POOL) -> list[str]:
    """Register `count` ready machines (no processes: the lease path never calls the provider).
    The async twin of tests.conftest.fill_pool, for tests already inside an event loop."""
    inventory = Inventory(redis)
    ids = [f"test-{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for machine_id in ids:
        await inventory.mark_booting(machine_id, pool)
        await inventory.make_ready(machine_id, pool, f"http://127.0.0.1:1/{machine_id}")
    return ids


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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
