"""Lease benchmark (issue 2): the lease path through the real HTTP API, Postgres and Redis.

    .venv/bin/python -m tests.bench.lease_bench            # the full run: 2,000 leases per phase
    .venv/bin/python -m tests.bench.lease_bench --quick    # a smoke run (200 leases, 5 boots)

What it does, on the local servers (never mocks):

  * creates a fresh database on BENCH_POSTGRES_URL's server (default
    postgresql://postgres@127.0.0.1:5432/postgres), applies the migrations, and drops it at the
    end; uses a Redis database claimed for the run (tests/redis_claim.py; BENCH_REDIS_URL names
    one instead), flushed
    at the start, before the on-demand phase and at the end;
  * starts ONE web process (`preview-orchestrator web`) as a subprocess;
  * creates users with quotas high enough that no lease is refused;
  * phase 1 (warm, latency): registers ready machines directly in Redis (the lease path never
    calls the provider, so records with fake addresses are a sufficient "lightweight provider"),
    then makes N leases from 10 concurrent clients and reports p50 / p99 per request;
  * phase 2 (warm, throughput): refills, N leases from 50 concurrent clients: leases/s;
    the sessions of both warm phases are ended (DELETE) after phase 2, outside the timings;
  * phase 3 (on-demand baseline): empty pool, a worker process with the local provider and
    pool bounds 0/0; each lease is timed from the POST (202 booting) until GET shows the session
    active, one at a time; the ratio on-demand p50 / warm p50 is printed.

Before each timed phase a few unmeasured leases warm the connections. The client is a minimal
HTTP/1.1 keep-alive client (see Connection): it runs on the same two cores as the server,
Postgres and Redis, and httpx cost more CPU per request than the server it measured. The table
shows how busy each party was, and "other" what the rest of the machine used meanwhile (other
tenants; in the on-demand phase also the worker and the machines it boots): compare runs only
when "other" is low. Exit status 1 when a target is missed.

    --clients 10,50        concurrent clients of the two warm phases
    --json PATH            also write the figures as JSON
    --profile-web PATH     attach py-spy (pip install py-spy) to the web process during the warm
                           phases: .svg flamegraph, .json speedscope, else raw collapsed stacks

Not collected by pytest (the name does not match test_*.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis

from app.auth import mint_hs256_token
from pool.store.inventory import Inventory, PoolKey
from tests.bench import common
from tests.bench.common import (
    POSTGRES,
    REDIS,
    cpu_by_name,
    machine_description,
    percentile,
    process_cpu,
    system_ticks,
    verdict,
)
from tests.conftest import free_port
from tests.redis_claim import redis_url
from tests.redis_replies import sync_reply

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = redis_url("BENCH_REDIS_URL", "bench-lease")
JWT_SECRET = "bench-jwt-secret-" + "x" * 32
TOKEN_SECRET = "bench-session-token-secret-" + "y" * 32
TEMPLATE, REGION = "react-web", "local"
SESSIONS = "/api/preview/sessions"

P50_TARGET_MS = 15.0
P99_TARGET_MS = 50.0
THROUGHPUT_TARGET = 500.0

BOOT_POLL_SECONDS = 0.02
BOOT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    project_id: uuid.UUID
    headers: dict[str, str]


@dataclass
class PhaseResult:
    name: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0
    web_cpu_seconds: float = 0.0
    bench_cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    redis_cpu_seconds: float = 0.0
    system_busy: float = 0.0  # fraction of all cores busy during the phase

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    @property
    def throughput(self) -> float:
        return self.count / self.wall_seconds if self.wall_seconds else 0.0

    def _share(self, cpu_seconds: float) -> float:
        """CPU seconds as a percentage of one core over the phase."""
        return round(100 * cpu_seconds / self.wall_seconds, 1) if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "clients": self.clients,
            "count": self.count,
            "errors": dict(self.errors),
            "p50_ms": round(self.percentile(50), 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=math.nan), 2),
            "wall_s": round(self.wall_seconds, 3),
            "per_second": round(self.throughput, 1),
            "web_cpu_pct": self._share(self.web_cpu_seconds),
            "bench_cpu_pct": self._share(self.bench_cpu_seconds),
            "postgres_cpu_pct": self._share(self.postgres_cpu_seconds),
            "redis_cpu_pct": self._share(self.redis_cpu_seconds),
            # Everything else on the machine (other tenants, the kernel), in % of one core.
            "other_cpu_pct": round(
                100 * self.system_busy * (os.cpu_count() or 1)
                - self._share(
                    self.web_cpu_seconds
                    + self.bench_cpu_seconds
                    + self.postgres_cpu_seconds
                    + self.redis_cpu_seconds
                ),
                1,
            ),
            "system_busy_pct": round(100 * self.system_busy, 1),
        }


class CpuMeter:
    """CPU used during a phase by the web process, this process, Postgres (every backend on
    the server, so other users of it count too), Redis, and the machine as a whole."""

    def __init__(self, web_pid: int) -> None:
        self.web_pid = web_pid

    def _sample(self) -> tuple[float, float, float, float, tuple[int, int]]:
        return (
            sum(process_cpu(self.web_pid)),
            time.process_time(),
            cpu_by_name(POSTGRES),
            cpu_by_name(REDIS),
            system_ticks(),
        )

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = self._sample()

    def record(self, result: PhaseResult) -> None:
        (w0, b0, p0, r0, (busy0, total0)), (w1, b1, p1, r1, (busy1, total1)) = (
            self._start,
            self._end,
        )
        result.web_cpu_seconds, result.bench_cpu_seconds = w1 - w0, b1 - b0
        result.postgres_cpu_seconds, result.redis_cpu_seconds = p1 - p0, r1 - r0
        result.system_busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


# --- stores -------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    with common.fresh_database(ADMIN_URL, "po_bench") as url:
        yield url


def flush_redis() -> None:
    common.flush_redis(REDIS_URL)


def server_versions(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        info: dict[str, Any] = sync_reply(client.info("server"))
    finally:
        client.close()
    return {
        "postgres": str(row[0]) if row else "?",
        "redis": str(info.get("redis_version") or info.get("valkey_version") or "?"),
    }


def make_users(database_url: str, count: int) -> list[User]:
    """Users, each owning one project, with quotas no benchmark run reaches."""
    users = [User(uuid.uuid4(), uuid.uuid4(), {}) for _ in range(count)]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s)",
            [(u.id, f"{u.id.hex[:12]}@bench.test") for u in users],
        )
        cur.executemany(
            "INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, 'bench')",
            [(u.project_id, u.id) for u in users],
        )
        cur.executemany(
            """INSERT INTO user_quotas (user_id, plan, max_concurrent_sessions,
                   creations_per_minute, creation_burst)
               VALUES (%s, 'free', 1000000, 1000000, 1000000)""",
            [(u.id,) for u in users],
        )
    return [
        User(
            u.id,
            u.project_id,
            {"Authorization": f"Bearer {mint_hs256_token(JWT_SECRET, user_id=u.id, ttl=7200)}"},
        )
        for u in users
    ]


async def fill_pool(count: int) -> None:
    """Register `count` ready machines directly in Redis: fake addresses, no processes."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        inventory = Inventory(client)
        pool = PoolKey(TEMPLATE, REGION)

        async def one(machine_id: str) -> None:
            await inventory.mark_booting(machine_id, pool, f"token-of-{machine_id}")
            await inventory.make_ready(machine_id, pool, f"http://127.0.0.1:1/{machine_id}")

        ids = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(count)]
        for start in range(0, count, 200):
            await asyncio.gather(*(one(m) for m in ids[start : start + 200]))
    finally:
        await client.aclose()


# --- processes ----------------------------------------------------------------------------------


def _command() -> list[str]:
    script = Path(sys.executable).with_name("preview-orchestrator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


class Service:
    """A `preview-orchestrator` subprocess in its own process group, its output in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*_command(), *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


def service_env(database_url: str, data_dir: Path, ondemand_max: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREVIEW_", "SUPABASE_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        SUPABASE_JWT_SECRET=JWT_SECRET,
        PREVIEW_TOKEN_SECRET=TOKEN_SECRET,
        PREVIEW_LOG_LEVEL="warning",
        PREVIEW_PROVIDER="local",
        PREVIEW_DATA_DIR=str(data_dir),
        PREVIEW_POOL_MIN="0",
        PREVIEW_POOL_MAX="0",
        PREVIEW_ONDEMAND_MAX=str(ondemand_max),
        PREVIEW_DEFAULT_TEMPLATE=TEMPLATE,
        PREVIEW_DEFAULT_REGION=REGION,
    )
    return env


async def wait_healthy(port: int, service: Service, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"the web process exited:\n{service.log_tail()}")
        connection = Connection("127.0.0.1", port)
        try:
            if (await connection.request("GET", "/healthz", {})).status == 200:
                return
        except TransportError:
            pass
        finally:
            connection.close()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the web process did not answer /healthz in {timeout}s")


class Profiler:
    """py-spy attached to the web process for the warm phases (--profile-web)."""

    def __init__(self, output: Path, pid: int, rate: int) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile-web needs py-spy: .venv/bin/pip install py-spy")
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(output.suffix, "raw")
        self.process = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                fmt,
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.output = output

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        print(f"profile written to {self.output}", flush=True)


# --- the phases ---------------------------------------------------------------------------------


class TransportError(Exception):
    """The connection failed or the server closed it mid-request."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error_key(self) -> str:
        try:
            body = self.json()
        except ValueError:
            body = None
        code = body.get("error", "") if isinstance(body, dict) else ""
        return f"{self.status} {code}".strip()


class Connection:
    """One HTTP/1.1 keep-alive connection: the bench's client.

    Deliberately minimal (Content-Length bodies only, which is all this API sends): the client
    shares the server's two cores, and httpx.AsyncClient cost 4 ms of CPU per request at 10
    concurrent clients and 12 ms at 50 here — more than the server it measures, which made the
    figures a measurement of the client. This one costs a few tens of microseconds.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> Reply:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
            except OSError as exc:
                raise TransportError(f"connect: {exc}") from exc
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body is not None:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body or b'')}")
        try:
            self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
            head = await self._reader.readuntil(b"\r\n\r\n")
            status, length, close = _parse_head(head)
            data = await self._reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise TransportError(type(exc).__name__) from exc
        if close:
            self.close()
        return Reply(status, data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    status_line, *header_lines = head.rstrip(b"\r\n").split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length, close = 0, False
    for line in header_lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise TransportError("chunked responses are not supported")
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return status, length, close


def _lease_body(user: User) -> bytes:
    return json.dumps({"projectId": str(user.project_id)}).encode()


async def run_leases(
    connections: list[Connection],
    users: list[User],
    count: int,
    result: PhaseResult,
    created: list[tuple[User, str]],
) -> None:
    """`count` leases from one concurrent client per connection; each request is timed on its
    own, the phase as a whole for throughput."""
    counter = itertools.count()
    offset = secrets.randbelow(len(users))

    async def client_loop(connection: Connection) -> None:
        while (i := next(counter)) < count:
            user = users[(offset + i) % len(users)]
            body = _lease_body(user)
            started = time.perf_counter()
            try:
                reply = await connection.request("POST", SESSIONS, user.headers, body)
            except TransportError as exc:
                result.errors[str(exc)] += 1
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if reply.status == 201:
                result.latencies_ms.append(elapsed)
                created.append((user, reply.json()["id"]))
            else:
                result.errors[reply.error_key()] += 1
                if reply.status == 202:  # the pool ran dry: an on-demand boot was queued
                    created.append((user, reply.json()["id"]))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(c) for c in connections))
    result.wall_seconds = time.perf_counter() - started


async def end_sessions(connections: list[Connection], sessions: list[tuple[User, str]]) -> int:
    """DELETE every session; returns how many deletes failed."""
    queue = iter(sessions)
    failed = 0

    async def loop(connection: Connection) -> None:
        nonlocal failed
        for user, session_id in queue:
            try:
                reply = await connection.request("DELETE", f"{SESSIONS}/{session_id}", user.headers)
            except TransportError:
                failed += 1
                continue
            if reply.status != 204:
                failed += 1

    await asyncio.gather(*(loop(c) for c in connections))
    return failed


def _connections(port: int, count: int) -> list[Connection]:
    return [Connection("127.0.0.1", port) for _ in range(count)]


async def warm_phase(
    port: int,
    users: list[User],
    created: list[tuple[User, str]],
    *,
    name: str,
    leases: int,
    clients: int,
    warmup: int,
    meter: CpuMeter,
) -> PhaseResult:
    """Fill the pool, then time `leases` leases; the sessions are ended later, by the caller,
    so that a profile of the warm phases holds leases only."""
    await fill_pool(leases + warmup + clients)
    result = PhaseResult(name, clients)
    connections = _connections(port, clients)
    try:
        # Unmeasured: opens the keep-alive connections and the database pool's.
        await run_leases(connections, users, max(warmup, clients), PhaseResult("", 0), created)
        with meter:
            await run_leases(connections, users, leases, result, created)
        meter.record(result)
    finally:
        for connection in connections:
            connection.close()
    return result


async def ondemand_phase(
    port: int, users: list[User], *, boots: int, meter: CpuMeter
) -> PhaseResult:
    """One lease at a time on an empty pool: POST (202 booting) until GET shows it active."""
    result = PhaseResult("on-demand", 1)
    created: list[tuple[User, str]] = []
    connection = Connection("127.0.0.1", port)
    try:
        # Unmeasured: the worker process is still starting up.
        await _time_to_machine(connection, users[0], created, PhaseResult("", 0))
        with meter:
            started = time.perf_counter()
            for i in range(1, boots + 1):
                elapsed = await _time_to_machine(connection, users[i % len(users)], created, result)
                if elapsed is not None:
                    result.latencies_ms.append(elapsed)
            result.wall_seconds = time.perf_counter() - started
        meter.record(result)
    finally:
        failed = await end_sessions([connection], created)
        if failed:
            result.errors["end failed"] += failed
        connection.close()
    return result


async def _time_to_machine(
    connection: Connection,
    user: User,
    created: list[tuple[User, str]],
    result: PhaseResult,
) -> float | None:
    started = time.perf_counter()
    try:
        reply = await connection.request("POST", SESSIONS, user.headers, _lease_body(user))
        if reply.status not in (201, 202):
            result.errors[reply.error_key()] += 1
            return None
        session_id = reply.json()["id"]
        created.append((user, session_id))
        if reply.status == 201:
            result.errors["201 warm machine (pool not empty)"] += 1
            return None
        deadline = started + BOOT_TIMEOUT_SECONDS
        while time.perf_counter() < deadline:
            got = await connection.request("GET", f"{SESSIONS}/{session_id}", user.headers)
            status = got.json().get("status") if got.status == 200 else None
            if status == "active":
                return (time.perf_counter() - started) * 1000
            if status in ("ended", "failed"):
                result.errors[f"boot {status}"] += 1
                return None
            await asyncio.sleep(BOOT_POLL_SECONDS)
    except TransportError as exc:
        result.errors[str(exc)] += 1
        return None
    result.errors["boot timeout"] += 1
    return None


async def destroy_local_machines(data_dir: Path) -> int:
    """Destroy every machine the local provider knows under `data_dir`, the provider built
    exactly as the worker builds it."""
    from app.settings import load_settings
    from app.wiring import make_provider

    if not data_dir.exists():
        return 0
    provider = make_provider(load_settings(preview_provider="local", preview_data_dir=data_dir))
    try:
        machines = await provider.list()
        for machine in machines:
            await provider.destroy(machine.id)
        return len(machines)
    finally:
        await provider.aclose()


# --- the report ---------------------------------------------------------------------------------


def report(
    machine: dict[str, Any],
    versions: dict[str, str],
    phases: list[PhaseResult],
    args: argparse.Namespace,
) -> dict[str, Any]:
    latency, throughput, ondemand = phases[0], phases[1], phases[2] if len(phases) > 2 else None
    print()
    print(
        f"lease benchmark: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['cpu']}; Python {machine['python']}, Postgres {versions['postgres']}, "
        f"Redis {versions['redis']}; load average at start "
        f"{' '.join(f'{x:.2f}' for x in machine['loadavg'])}"
    )
    print(f"one web process; {args.users} users; {args.leases} leases per warm phase")
    print()
    header = (
        f"{'phase':<23}{'clients':>8}{'count':>6}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'per s':>7}{'errors':>7}   cpu: {'web':>5}{'bench':>6}{'pg':>5}"
        f"{'redis':>6}{'other':>6}{'all':>5}"
    )
    print(header)
    print("-" * len(header))
    for phase in phases:
        d = phase.as_dict()
        print(
            f"{phase.name:<23}{phase.clients:>8}{phase.count:>6}{d['p50_ms']:>8.1f}"
            f"{d['p90_ms']:>8.1f}{d['p99_ms']:>8.1f}{d['max_ms']:>8.1f}{d['per_second']:>7.0f}"
            f"{sum(phase.errors.values()):>7}        {d['web_cpu_pct']:>4.0f}%"
            f"{d['bench_cpu_pct']:>5.0f}%{d['postgres_cpu_pct']:>4.0f}%{d['redis_cpu_pct']:>5.0f}%"
            f"{d['other_cpu_pct']:>5.0f}%"
            f"{d['system_busy_pct']:>4.0f}%"
        )
    for phase in phases:
        if phase.errors:
            print(f"  {phase.name} errors: {dict(phase.errors)}")
    print("  cpu: % of one core during the phase (pg: all Postgres backends); all: % of all cores")
    if ondemand is not None:
        print("  on-demand: time from the POST to a GET showing 'active', polled every 20 ms")
    print()
    checks = [
        (
            f"p50 at {latency.clients} clients <= {P50_TARGET_MS:g} ms",
            f"{latency.percentile(50):.1f} ms",
            latency.percentile(50) <= P50_TARGET_MS,
        ),
        (
            f"p99 at {latency.clients} clients <= {P99_TARGET_MS:g} ms",
            f"{latency.percentile(99):.1f} ms",
            latency.percentile(99) <= P99_TARGET_MS,
        ),
        (
            f"throughput at {throughput.clients} clients >= {THROUGHPUT_TARGET:g}/s",
            f"{throughput.throughput:.0f}/s",
            throughput.throughput >= THROUGHPUT_TARGET,
        ),
        ("no failed requests", "", not any(p.errors for p in phases)),
    ]
    print(f"{'target':<40}{'measured':>12}  result")
    for name, figure, ok in checks:
        print(f"{name:<40}{figure:>12}  {verdict(ok)}")
    ratio = None
    if ondemand is not None and ondemand.count:
        ratio = ondemand.percentile(50) / latency.percentile(50)
        print()
        print(
            f"on-demand p50 {ondemand.percentile(50):.0f} ms / warm p50 "
            f"{latency.percentile(50):.1f} ms = {ratio:.0f}x faster from the warm pool"
        )
    return {
        "machine": machine,
        "versions": versions,
        "phases": [p.as_dict() for p in phases],
        "checks": {name: ok for name, _, ok in checks},
        "ratio": round(ratio, 1) if ratio else None,
    }


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, database_url: str, work_dir: Path) -> dict[str, Any]:
    machine = machine_description()
    versions = server_versions(database_url)
    users = make_users(database_url, args.users)
    port = args.port or free_port()
    data_dir = work_dir / "data"
    env = service_env(database_url, data_dir, ondemand_max=max(100, args.boots * 2))
    flush_redis()
    services: list[Service] = []
    phases: list[PhaseResult] = []
    try:
        web = Service("web", ["web", "--host", "127.0.0.1", "--port", str(port)], env, work_dir)
        services.append(web)
        await wait_healthy(port, web)
        meter = CpuMeter(web.pid)
        profiler = (
            Profiler(args.profile_web, web.pid, args.profile_rate) if args.profile_web else None
        )
        created: list[tuple[User, str]] = []
        try:
            for name, clients in (
                ("warm pool: latency", args.clients[0]),
                ("warm pool: throughput", args.clients[1]),
            ):
                print(f"{name}: {args.leases} leases from {clients} clients ...", flush=True)
                phases.append(
                    await warm_phase(
                        port,
                        users,
                        created,
                        name=name,
                        leases=args.leases,
                        clients=clients,
                        warmup=args.warmup,
                        meter=meter,
                    )
                )
                if not web.alive():
                    raise RuntimeError(f"the web process exited:\n{web.log_tail()}")
        finally:
            if profiler is not None:
                profiler.stop()
        connections = _connections(port, 10)
        failed = await end_sessions(connections, created)
        for connection in connections:
            connection.close()
        print(f"ended {len(created)} warm-pool sessions ({failed} failed)", flush=True)
        if failed:
            phases[-1].errors["end failed"] += failed
        if args.boots:
            print(f"on-demand: {args.boots} boots, one at a time (local provider) ...", flush=True)
            flush_redis()
            worker = Service("worker", ["worker"], env, work_dir)
            services.append(worker)
            try:
                phases.append(await ondemand_phase(port, users, boots=args.boots, meter=meter))
            finally:
                worker.stop()
                destroyed = await destroy_local_machines(data_dir)
                print(f"destroyed {destroyed} local machine(s)", flush=True)
        if not web.alive():
            print(f"the web process exited early:\n{web.log_tail()}", file=sys.stderr)
    finally:
        for service in reversed(services):
            service.stop()
        flush_redis()
    return report(machine, versions, phases, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.lease_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--leases", type=int, help="leases per warm phase (default 2000)")
    parser.add_argument("--boots", type=int, help="on-demand boots, 0 to skip (default 20)")
    parser.add_argument("--users", type=int, help="distinct users leasing (default 200)")
    parser.add_argument("--warmup", type=int, help="unmeasured leases per phase (default 50)")
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10, 50],
        help="concurrent clients of the latency and the throughput phase (default 10,50)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 leases, 5 boots")
    parser.add_argument("--port", type=int, default=0, help="web port (default: a free one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--profile-web",
        type=Path,
        help="attach py-spy to the web process during the warm phases (.svg flamegraph, "
        ".json speedscope, otherwise raw collapsed stacks)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s")
    args = parser.parse_args(argv)
    defaults = {"leases": 2000, "boots": 20, "users": 200, "warmup": 50}
    if args.quick:
        defaults = {"leases": 200, "boots": 5, "users": 50, "warmup": 20}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if len(args.clients) != 2 or min(args.clients) < 1:
        parser.error("--clients takes two positive numbers, as in 10,50")
    if args.leases < 1 or args.users < 1:
        parser.error("--leases and --users must be positive")
    return args


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the client too, when installed (uvicorn[standard] brings it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="lease-bench-") as tmp,
        fresh_database() as database_url,
    ):
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            summary = runner.run(run(args, database_url, Path(tmp)))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0 if all(summary["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
