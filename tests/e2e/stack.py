"""The whole preview stack as the README runs it, for browser tests and the preview benchmark.

`running_stack` starts `preview-orchestrator dev --port P` as a subprocess on this machine's
real Postgres (a fresh database, dropped at the end) and Redis (a dedicated database, flushed
before and after), with the local provider running the real sandbox agent and Vite. It waits
for /readyz and for ready machines in the warm pool, and always stops the process (SIGINT:
`dev` destroys its local machines on the way out), then checks that no machine process (agent
or Vite) outlived it: leftovers are killed and reported as a failure.

It does not skip: a missing npm or template install is an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from pool.providers.local import LocalProvider
from tests.conftest import free_port
from tests.redis_claim import flush as flush_redis

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("preview-orchestrator")
TEMPLATES = REPO / "sandbox" / "templates"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
JWT_SECRET = "e2e-jwt-secret-" + "j" * 40
TOKEN_SECRET = "e2e-session-token-secret-" + "t" * 40

READY_TIMEOUT = 60.0
POOL_TIMEOUT = 120.0
STOP_TIMEOUT = 45.0
LEASE_TIMEOUT = 60.0

# The React template's App with a placeholder heading: every edit the tests make is this file.
APP = """import { useState } from 'react'

export default function App() {
  const [count, setCount] = useState(0)
  return (
    <main>
      <h1 id="title">TITLE</h1>
      <button id="counter" type="button" onClick={() => setCount((n) => n + 1)}>
        count is {count}
      </button>
    </main>
  )
}
"""


def app_source(title: str) -> str:
    return APP.replace("TITLE", title)


def _database_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@dataclass(frozen=True)
class Session:
    """A leased preview session, as POST /api/preview/sessions answered it."""

    id: str
    token: str
    preview_url: str
    machine_id: str
    raw: dict[str, Any]

    @property
    def preview_host(self) -> str:
        return self.preview_url.split("://", 1)[1].split("/", 1)[0]

    def editor_url(self, base_url: str, token: str | None = None) -> str:
        ws_base = "ws" + base_url.removeprefix("http")
        return f"{ws_base}/api/preview/sessions/{self.id}/ws?token={token or self.token}"


@dataclass
class Stack:
    port: int
    data_dir: Path
    database_url: str
    redis_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    http: httpx.Client
    admin_token: str = ""
    project_id: str = ""
    user_id: str = ""
    # Agents this process (re)started through its own LocalProvider: ours to reap.
    spawned: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/sandbox/ws"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"`dev` exited with {self.process.returncode}:\n{self.log_tail()}")

    # -- the pool ------------------------------------------------------------------------------

    def pool(self, template: str | None = None) -> dict[str, Any]:
        """The pool row of `template` (the stack's default template unless named)."""
        template = template or self.env["PREVIEW_DEFAULT_TEMPLATE"]
        answer = self.http.get(f"{self.base_url}/api/admin/pool", headers=self.headers)
        answer.raise_for_status()
        for row in answer.json()["pools"]:
            if row["template"] == template:
                return dict(row)
        raise AssertionError(f"no pool for {template}: {answer.text}")

    def wait_ready_machines(
        self, count: int, timeout: float = POOL_TIMEOUT, *, settled: bool = False
    ) -> dict[str, Any]:
        """Until the pool holds `count` ready machines (and, if `settled`, none booting or
        recycling: nothing else is using the CPU)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            row = self.pool()
            busy = row["booting"] + row["recycling"] if settled else 0
            if row["ready"] >= count and busy == 0:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"pool not ready in {timeout}s: {row}\n{self.log_tail()}")
            time.sleep(0.1)

    # -- sessions ------------------------------------------------------------------------------

    def lease(self, **extra: Any) -> Session:
        """A session for the demo project: from the warm pool (201), or booted (202, polled).
        `extra`: more fields of the request (`restore=True`)."""
        answer = self.http.post(
            f"{self.base_url}/api/preview/sessions",
            json={"projectId": self.project_id, **extra},
            headers=self.headers,
            timeout=LEASE_TIMEOUT,
        )
        assert answer.status_code in (201, 202), answer.text
        body = answer.json()
        deadline = time.monotonic() + LEASE_TIMEOUT
        while body["status"] != "active":
            assert body["status"] == "booting", body
            assert time.monotonic() < deadline, f"session not active in time: {body}"
            time.sleep(0.1)
            polled = self.http.get(
                f"{self.base_url}/api/preview/sessions/{body['id']}", headers=self.headers
            )
            polled.raise_for_status()
            body = polled.json()
        return Session(
            id=body["id"],
            token=body["token"],
            preview_url=body["previewUrl"],
            machine_id=body["machineId"],
            raw=body,
        )

    def share(self, session: Session) -> dict[str, Any]:
        """The session's share link (POST .../share): what the panel's QR dialog shows."""
        answer = self.http.post(
            f"{self.base_url}/api/preview/sessions/{session.id}/share", headers=self.headers
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def end(self, session: Session) -> None:
        answer = self.http.delete(
            f"{self.base_url}/api/preview/sessions/{session.id}", headers=self.headers
        )
        assert answer.status_code == 204, answer.text

    # -- machines ------------------------------------------------------------------------------

    def session_machine(self, session_id: str) -> str:
        """The machine the session's lease row names (Postgres: survives a Redis loss)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT container_id FROM preview_sessions WHERE id = %s", (session_id,)
            ).fetchone()
        assert row is not None and row[0], f"session {session_id} has no machine"
        return str(row[0])

    def workspace(self, machine_id: str) -> Path:
        return self.data_dir / "machines" / machine_id / "workspace"

    def run_provider(self, action: str, machine_id: str) -> dict[str, str]:
        """`get` or `start` a machine through a LocalProvider of this process (as the machine's
        restart policy would); returns the machine's metadata."""

        async def run() -> dict[str, str]:
            provider = LocalProvider(
                self.data_dir, start_timeout=30.0, orchestrator_ws_url=self.sandbox_ws_url
            )
            try:
                if action == "start":
                    machine = await provider.start(machine_id)
                else:
                    machine = await provider.get(machine_id)
            finally:
                await provider.aclose()
            return dict(machine.metadata)

        # In a thread of its own: Playwright's sync API keeps an event loop marked as running
        # in this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            metadata = pool.submit(lambda: asyncio.run(run())).result()
        if action == "start" and "pid" in metadata:
            self.spawned.add(int(metadata["pid"]))
        return metadata


def install_templates(*names: str) -> None:
    """npm ci of the templates (a no-op when installed); failing, not skipping, without npm."""
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.templates.install", *names],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"template install failed:\n{done.stdout}{done.stderr}"


def machine_processes(data_dir: Path) -> list[int]:
    """Processes whose command line names `data_dir`: machine agents (`--workspace`) and their
    Vite (`.../workspace/node_modules/vite/bin/vite.js`)."""
    needle = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[:1]
        except OSError:
            continue
        if needle in cmdline and state != ["Z"]:
            found.append(int(entry.name))
    return found


def _wait_http(stack: Stack, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stack.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if stack.http.get(f"{stack.base_url}{path}", timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} not 200 in {timeout}s:\n{stack.log_tail()}")
        time.sleep(0.1)


def _raise_demo_quotas(database_url: str, user_id: str) -> None:
    """The demo user is on the free plan (3 live sessions, 10 creations in a burst): tests and
    benchmarks lease more than that."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO user_quotas (user_id, plan, max_concurrent_sessions,
                   creations_per_minute, creation_burst) VALUES (%s, 'pro', 50, 6000, 500)
               ON CONFLICT (user_id) DO UPDATE SET max_concurrent_sessions = 50,
                   creations_per_minute = 6000, creation_burst = 500""",
            (uuid.UUID(user_id),),
        )


def _stop(stack: Stack) -> list[str]:
    """SIGTERM `dev`, wait, then make sure none of its machines' processes survived. SIGTERM,
    not Ctrl-C's SIGINT: it is what `kill` and process managers send, and the one whose
    default action would skip the cleanup (app/cli.py: main)."""
    problems = []
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"`dev` did not stop within {STOP_TIMEOUT}s after SIGTERM")
            stack.process.kill()
            stack.process.wait()
    deadline = time.monotonic() + 5.0
    while (leaked := machine_processes(stack.data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if leaked:
        problems.append(f"machine processes outlived `dev`: {leaked}")
        for pid in leaked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _reap(stack.spawned, timeout=5.0)
    machines = stack.data_dir / "machines"
    if machines.is_dir() and any(machines.iterdir()):
        problems.append(f"machine directories left: {sorted(p.name for p in machines.iterdir())}")
    return problems


def _reap(pids: set[int], timeout: float) -> None:
    """Collect the exit status of the machines this process spawned (stopped by `dev`)."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    pending.discard(pid)
            except ChildProcessError:
                pending.discard(pid)
        time.sleep(0.05)


@contextlib.contextmanager
def running_stack(
    root: Path,
    *,
    redis_url: str,
    pool_min: int = 2,
    pool_max: int = 4,
    templates: str = "react-web",
    log_level: str = "info",
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """`preview-orchestrator dev` with its warm pool up; always stopped and cleaned up."""
    install_templates(*templates.split(","))
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    name = f"po_e2e_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = _database_url(name)
    flush_redis(redis_url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(data_dir),
        "PREVIEW_POOL_MIN": str(pool_min),
        "PREVIEW_POOL_MAX": str(pool_max),
        "PREVIEW_TEMPLATES": templates,
        "PREVIEW_DEFAULT_TEMPLATE": templates.split(",")[0],
        "PREVIEW_LOG_LEVEL": log_level,
        **(extra_env or {}),
    }
    log_path = root / "dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CLI), "dev", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    http = httpx.Client(trust_env=False, timeout=10.0)
    stack = Stack(port, data_dir, database_url, redis_url, env, process, log_path, http)
    problems: list[str] = []
    try:
        _wait_http(stack, "/readyz", READY_TIMEOUT)
        demo = http.post(f"{stack.base_url}/api/dev/token?admin=1")
        demo.raise_for_status()
        stack.admin_token = demo.json()["accessToken"]
        stack.project_id = demo.json()["projectId"]
        stack.user_id = demo.json()["userId"]
        _raise_demo_quotas(database_url, stack.user_id)
        stack.wait_ready_machines(pool_min)
        yield stack
    finally:
        problems = _stop(stack)
        http.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        flush_redis(redis_url)
    assert not problems, "; ".join(problems) + "\n" + stack.log_tail()


@contextlib.contextmanager
def web_process(
    stack: Stack, root: Path, port: int | None = None, *, stop_signal: int = signal.SIGTERM
) -> Iterator[str]:
    """A second `preview-orchestrator web` on the stack's stores and secrets (on `port`, or a
    free one); yields its base URL and always stops it (with `stop_signal`: SIGKILL for a
    crash)."""
    port = port or free_port()
    log_path = root / f"web-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CLI), "web", "--host", "127.0.0.1", "--port", str(port)],
            env={**stack.env, "PREVIEW_PUBLIC_URL": f"http://localhost:{port}"},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"web exited {process.returncode}: {log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if stack.http.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"web not ready: {log_path.read_text()}"
            time.sleep(0.1)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
