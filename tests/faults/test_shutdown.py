"""Shutdown is a sequence with a deadline (app/shutdown.py; docs/architecture.md, "Shutdown"):
after SIGTERM, `web` and `dev` stop taking connections at once and are gone within their
bounds, even with a client whose request never finishes and, for `dev`, a local machine that
no longer runs (SIGSTOPped: it ignores SIGTERM until SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from app.shutdown import (
    DEV_DRAIN_SECONDS,
    DEV_MACHINES_STOP_SECONDS,
    DEV_WORKER_STOP_SECONDS,
    RESOURCES_CLOSE_SECONDS,
    WEB_DEADLINE_SECONDS,
    WEB_DRAIN_SECONDS,
)
from pool.providers.local import LocalProvider
from tests.conftest import JWT_SECRET, REDIS_URL, TOKEN_SECRET, free_port, make_user
from tests.e2e.stack import machine_processes, running_stack
from tests.integration.helpers import CLI, REPO_ROOT, stop_process

pytestmark = pytest.mark.slow

START_TIMEOUT = 30.0
# Fly's kill_timeout when fly.toml sets none (https://fly.io/docs/reference/configuration/).
FLY_DEFAULT_KILL_TIMEOUT = 5.0


def _kill_timeout() -> float:
    value = tomllib.loads((REPO_ROOT / "fly.toml").read_text()).get("kill_timeout")
    if value is None:
        return FLY_DEFAULT_KILL_TIMEOUT
    return float(str(value).removesuffix("s"))


def _stalled_request(port: int, token: str) -> socket.socket:
    """An authenticated POST whose body never comes: the handler waits for it, so the request
    stays in flight until the drain's deadline cancels it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /api/preview/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    return sock


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


@contextlib.contextmanager
def _web(settings: Settings, data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": REDIS_URL,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(data_dir),
    }
    log = data_dir / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CLI), "web", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            assert process.poll() is None, f"web exited:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                url = f"http://127.0.0.1:{port}/healthz"
                return httpx.get(url, timeout=1, trust_env=False).status_code == 200
            return False

        _wait_for(healthy, START_TIMEOUT, "web healthy")
        yield process, port
    finally:
        stop_process(process)


def test_web_drains_then_exits_within_its_deadline_and_flys_kill_timeout(
    settings: Settings, tmp_path: Path
) -> None:
    user = make_user(settings.database_url or "")
    with _web(settings, tmp_path) as (web, port):
        stalled = _stalled_request(port, user.token)
        try:
            time.sleep(0.5)  # the request is in the handler, waiting for its body
            started = time.monotonic()
            web.send_signal(signal.SIGTERM)

            # Intake stops at once; the process stays to drain the open request.
            _wait_for(lambda: _refused(port), 2.0, "new connections refused")
            assert web.poll() is None, "web exited without draining the open request"
            web.wait(WEB_DEADLINE_SECONDS + 10)
            elapsed = time.monotonic() - started
        finally:
            stalled.close()

    assert web.returncode == 0
    # The drain ran to its deadline (the request never finished), then the rest was bounded.
    assert WEB_DRAIN_SECONDS - 1 <= elapsed < WEB_DRAIN_SECONDS + RESOURCES_CLOSE_SECONDS
    assert elapsed < WEB_DEADLINE_SECONDS
    # Fly SIGKILLs at kill_timeout: the whole sequence must fit, or the drain is cut short.
    assert _kill_timeout() > WEB_DEADLINE_SECONDS


def test_dev_stops_within_its_bound_with_a_hung_machine_and_a_stalled_request(
    settings: Settings, tmp_path: Path
) -> None:
    with running_stack(
        tmp_path,
        redis_url=REDIS_URL,
        pool_min=2,
        pool_max=2,
        log_level="info",
        extra_env={"PREVIEW_LOCAL_PLACEHOLDER": "true"},
    ) as stack:
        pids = _machine_pids(stack.data_dir.resolve())
        assert len(pids) == 2, pids
        os.killpg(pids[0], signal.SIGSTOP)  # hung: deaf to SIGTERM, and to health checks
        stalled = _stalled_request(stack.port, stack.admin_token)
        try:
            time.sleep(0.5)
            started = time.monotonic()
            stack.process.send_signal(signal.SIGTERM)
            bound = (
                DEV_DRAIN_SECONDS
                + RESOURCES_CLOSE_SECONDS
                + DEV_WORKER_STOP_SECONDS
                + DEV_MACHINES_STOP_SECONDS
            )
            try:
                stack.process.wait(bound)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"`dev` still running {bound} s after SIGTERM:\n{stack.log_tail()}"
                ) from None
            elapsed = time.monotonic() - started
        finally:
            stalled.close()
        assert stack.process.returncode in (0, 130), stack.log_tail()
        # The hung machine was killed with the rest (running_stack also checks on exit).
        assert not machine_processes(stack.data_dir), stack.log_tail()
        assert "stopped 2 local preview machine(s)" in stack.log_tail(), stack.log_tail()
    assert elapsed >= DEV_DRAIN_SECONDS - 1  # the open request had its drain


def _machine_pids(data_dir: Path) -> list[int]:
    async def listing() -> list[int]:
        provider = LocalProvider(data_dir)
        try:
            machines = await provider.list()
        finally:
            await provider.aclose()
        return [int(m.metadata["pid"]) for m in machines if m.metadata.get("pid")]

    return asyncio.run(listing())
