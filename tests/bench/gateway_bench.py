"""Gateway fan-out benchmark (issue 3): editor patches relayed to machine agents, live.

    .venv/bin/python -m tests.bench.gateway_bench             # 500 sessions, 2,000 patches/s, 20 s
    .venv/bin/python -m tests.bench.gateway_bench --quick     # a smoke run (100 sessions, 5 s)
    .venv/bin/python -m tests.bench.gateway_bench --webs 2    # only the two-process phase

Target (the issue): one web process, 1,000 sockets (500 sessions x editor + machine agent),
2,000 patches/s: p99 relay latency <= 50 ms and no loss; then the same with two web processes.

What it does, on the local servers (never mocks):

  * creates a fresh database on BENCH_POSTGRES_URL's server (default
    postgresql://postgres@127.0.0.1:5432/postgres), applies the migrations, drops it at the end;
    uses a Redis database claimed for the run (tests/redis_claim.py; BENCH_GATEWAY_REDIS_URL
    names one instead), flushed
    before each phase and at the end;
  * per phase (1 web process, then 2): starts the `preview-orchestrator web` process(es),
    registers N ready machines directly in Redis with machine tokens (no machine processes:
    this load generator plays their agents), opens N agent sockets (hello; warm, waiting), leases
    N sessions through the HTTP API (each agent then gets `assign` over pub/sub), and opens one
    editor socket per session (hello -> welcome). With two web processes every editor is on web
    A and every agent on web B, so each patch crosses instances through Redis;
  * sends patches at a steady aggregate rate, round-robin over the sessions (each with its next
    seq, pipelined: an open-loop generator that never waits for acks), a small file whose content
    carries the send time. Agents answer `applied` for every patch, as a real agent does, so the
    server carries the whole round trip;
  * measures, for patches sent after a short warm-up: relay (editor send -> the agent socket
    receives the patch), ack (editor send -> `ack`) and applied (editor send -> `applied` back
    on the editor socket); and checks that every agent received every seq of its session exactly
    once and in order, and every patch was acked. A socket the server closes during the run
    (under overload, uvicorn's keepalive timeout) is reported, and so is the loss in the
    sessions whose sockets all stayed open.

All 2N client sockets live in this ONE process (asyncio + websockets), which shares the
machine with the server(s), Redis and Postgres: the table shows everyone's CPU and this
process's event-loop lag (a latency is only as precise as that lag). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
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

import httpx
import psycopg
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

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

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = redis_url("BENCH_GATEWAY_REDIS_URL", "bench-gateway")
JWT_SECRET = "bench-jwt-secret-" + "x" * 32
TOKEN_SECRET = "bench-session-token-secret-" + "y" * 32
TEMPLATE, REGION = "react-web", "local"
SESSIONS = "/api/preview/sessions"

RELAY_P99_TARGET_MS = 50.0
SESSIONS_PER_USER = 10
SETUP_CONCURRENCY = 50
DRAIN_STALL_SECONDS = 10.0  # a backlog still moving is waited for; one stuck this long is not
DRAIN_MAX_SECONDS = 300.0
LAG_TICK_SECONDS = 0.005
SEND_TICK_SECONDS = 0.001


@dataclass
class CpuShare:
    """CPU over a window, in % of one core; `busy` in % of all cores."""

    webs: list[float] = field(default_factory=list)
    web_system: float = 0.0  # the share of the web processes' CPU spent in the kernel, %
    bench: float = 0.0
    redis: float = 0.0
    postgres: float = 0.0
    busy: float = 0.0

    @property
    def other(self) -> float:
        ours = sum(self.webs) + self.bench + self.redis + self.postgres
        return max(0.0, self.busy * (os.cpu_count() or 1) - ours)


class CpuMeter:
    def __init__(self, web_pids: list[int]) -> None:
        self.web_pids = web_pids

    def _sample(
        self,
    ) -> tuple[list[tuple[float, float]], float, float, float, tuple[int, int], float]:
        return (
            [process_cpu(pid) for pid in self.web_pids],
            time.process_time(),
            cpu_by_name(REDIS),
            cpu_by_name(POSTGRES),
            system_ticks(),
            time.perf_counter(),
        )

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> CpuShare:
        (w0, b0, r0, p0, (busy0, all0), t0) = self._start
        (w1, b1, r1, p1, (busy1, all1), t1) = self._sample()
        wall = max(t1 - t0, 1e-9)

        def pct(seconds: float) -> float:
            return 100 * seconds / wall

        webs = [pct(sum(b) - sum(a)) for a, b in zip(w0, w1, strict=True)]
        system = sum(b[1] - a[1] for a, b in zip(w0, w1, strict=True))
        return CpuShare(
            webs=webs,
            web_system=100 * pct(system) / sum(webs) if sum(webs) else 0.0,
            bench=pct(b1 - b0),
            redis=pct(r1 - r0),
            postgres=max(0.0, pct(p1 - p0)),  # backends that exited take their time along
            busy=100 * (busy1 - busy0) / max(all1 - all0, 1),
        )


# --- stores -------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    with common.fresh_database(ADMIN_URL, "po_gwbench") as url:
        yield url


def flush_redis() -> None:
    common.flush_redis(REDIS_URL)


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    project_id: uuid.UUID
    headers: dict[str, str]


def make_users(database_url: str, count: int) -> list[User]:
    """Users, each owning one project, with quotas no run reaches."""
    ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s)",
            [(u, f"{u.hex[:12]}@gwbench.test") for u, _ in ids],
        )
        cur.executemany(
            "INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, 'gwbench')",
            [(p, u) for u, p in ids],
        )
        cur.executemany(
            """INSERT INTO user_quotas (user_id, plan, max_concurrent_sessions,
                   creations_per_minute, creation_burst)
               VALUES (%s, 'free', 1000000, 1000000, 1000000)""",
            [(u,) for u, _ in ids],
        )
    return [
        User(u, p, {"Authorization": f"Bearer {mint_hs256_token(JWT_SECRET, user_id=u, ttl=7200)}"})
        for u, p in ids
    ]


async def register_machines(count: int) -> dict[str, str]:
    """`count` ready machines with machine tokens, directly in Redis; {machine id: token}."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    inventory, pool = Inventory(client), PoolKey(TEMPLATE, REGION)
    machines = {f"gwb-{uuid.uuid4().hex[:12]}": secrets.token_urlsafe(24) for _ in range(count)}

    async def one(machine_id: str) -> None:
        await inventory.mark_booting(machine_id, pool, machines[machine_id])
        await inventory.make_ready(machine_id, pool, f"http://127.0.0.1:1/{machine_id}")

    try:
        ids = list(machines)
        for start in range(0, count, 100):
            await asyncio.gather(*(one(m) for m in ids[start : start + 100]))
    finally:
        await client.aclose()
    return machines


# --- web processes ------------------------------------------------------------------------------


class WebProcess:
    """`preview-orchestrator web` in its own process group, its output in a file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        script = Path(sys.executable).with_name("preview-orchestrator")
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [str(script), "web", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30, width: int = 240) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            return "\n".join(line[:width] for line in text)
        return ""

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"the web process exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the web process did not answer /healthz in {timeout}s")

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


def web_env(database_url: str, data_dir: Path, server_deflate: bool = False) -> dict[str, str]:
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
        PREVIEW_DEFAULT_TEMPLATE=TEMPLATE,
        PREVIEW_DEFAULT_REGION=REGION,
        PREVIEW_WS_DEFLATE="true" if server_deflate else "false",
    )
    return env


class Profiler:
    """py-spy on each web process for the measured window (--profile-web DIR)."""

    def __init__(self, out_dir: Path, label: str, pids: list[int], seconds: float) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise SystemExit("--profile-web needs py-spy: .venv/bin/pip install py-spy")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.processes = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--nonblocking",
                    "--pid",
                    str(pid),
                    "--rate",
                    "200",
                    "--duration",
                    str(math.ceil(seconds)),
                    "--format",
                    "raw",  # collapsed stacks: speedscope and inferno read them
                    "--output",
                    str(out_dir / f"{label}-web{i}.folded"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, pid in enumerate(pids)
        ]

    def wait(self) -> None:
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- simulated clients --------------------------------------------------------------------------


def _frame(kind: str, **fields: Any) -> str:
    return json.dumps({"v": 1, "type": kind, **fields}, separators=(",", ":"))


@dataclass
class Stats:
    """Latencies (ms) of patches sent inside the measured window [start, end)."""

    start: float = math.inf
    end: float = math.inf
    relay: list[float] = field(default_factory=list)
    ack: list[float] = field(default_factory=list)
    applied: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    unexpected: Counter[str] = field(default_factory=Counter)
    sent_in_window: int = 0
    acked_in_window: int = 0  # acks received in the window, whenever their patch was sent
    closing: bool = False  # the bench is closing its sockets: closes are expected

    def measured(self, sent_at: float) -> bool:
        return self.start <= sent_at < self.end


@dataclass
class Lane:
    """One session: its editor socket, its machine's agent socket, and what each has seen."""

    machine_id: str
    machine_token: str
    session_id: str = ""
    session_token: str = ""
    editor: ClientConnection | None = None
    agent: ClientConnection | None = None
    sent_at: list[float] = field(default_factory=list)  # index seq - 1
    relayed_next: int = 1  # the seq the agent expects next
    relayed_dup: int = 0
    relayed_gap: int = 0
    dropped: bool = False  # the server closed its editor or agent socket during the phase
    acked: bytearray = field(default_factory=bytearray)
    applied: bytearray = field(default_factory=bytearray)
    assigned: asyncio.Event = field(default_factory=asyncio.Event)
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    agent_pong: asyncio.Event = field(default_factory=asyncio.Event)
    editor_pong: asyncio.Event = field(default_factory=asyncio.Event)

    def settled(self) -> bool:
        n = len(self.sent_at)
        return self.relayed_next > n and all(self.acked[:n]) and all(self.applied[:n])


def _on_relayed(lane: Lane, message: dict[str, Any], now: float, stats: Stats) -> None:
    seq = message["seq"]
    if seq == lane.relayed_next:
        lane.relayed_next += 1
    elif seq < lane.relayed_next:
        lane.relayed_dup += 1
        return
    else:
        lane.relayed_gap += 1  # out of order or a hole: the loss check reports it
        lane.relayed_next = seq + 1
    sent_at = float(message["changes"][0]["content"].rsplit(" ", 1)[1])
    if stats.measured(sent_at):
        stats.relay.append((now - sent_at) * 1000)


def _closed(role: str, lane: Lane, ws: ClientConnection, stats: Stats) -> None:
    """A socket the server closed before the end of the phase (overload: keepalive timeout,
    rate limit...) loses what was still in flight on it; say so."""
    if not stats.closing:
        lane.dropped = True
        stats.unexpected[f"{role} socket closed: {ws.close_code} {ws.close_reason}".strip()] += 1


async def agent_reader(lane: Lane, stats: Stats) -> None:
    assert lane.agent is not None
    try:
        await _agent_frames(lane, stats)
    except ConnectionClosed:
        pass
    _closed("agent", lane, lane.agent, stats)


async def _agent_frames(lane: Lane, stats: Stats) -> None:
    assert lane.agent is not None
    async for raw in lane.agent:
        now = time.perf_counter()
        message = json.loads(raw)
        kind = message["type"]
        if kind == "patch":
            _on_relayed(lane, message, now, stats)
            await lane.agent.send(_frame("applied", seq=message["seq"]))
        elif kind == "assign":
            if message["session"] != lane.session_id and lane.session_id:
                stats.unexpected["agent: assign to another session"] += 1
            lane.session_id = message["session"]
            lane.assigned.set()
        elif kind == "pong":
            lane.agent_pong.set()
        else:
            stats.unexpected[f"agent: {kind} {message.get('code', '')}".strip()] += 1


def _mark(
    lane: Lane, flags: bytearray, seq: int, now: float, into: list[float], stats: Stats
) -> None:
    if not 1 <= seq <= len(lane.sent_at):
        stats.unexpected["editor: seq never sent"] += 1
        return
    if flags[seq - 1]:
        stats.unexpected["editor: duplicate ack/applied"] += 1
        return
    flags[seq - 1] = 1
    sent_at = lane.sent_at[seq - 1]
    if stats.measured(sent_at):
        into.append((now - sent_at) * 1000)


async def editor_reader(lane: Lane, stats: Stats) -> None:
    assert lane.editor is not None
    try:
        await _editor_frames(lane, stats)
    except ConnectionClosed:
        pass
    _closed("editor", lane, lane.editor, stats)


async def _editor_frames(lane: Lane, stats: Stats) -> None:
    assert lane.editor is not None
    async for raw in lane.editor:
        now = time.perf_counter()
        message = json.loads(raw)
        kind = message["type"]
        if kind == "ack":
            _mark(lane, lane.acked, message["seq"], now, stats.ack, stats)
            if stats.measured(now):
                stats.acked_in_window += 1
        elif kind == "applied":
            _mark(lane, lane.applied, message["seq"], now, stats.applied, stats)
        elif kind == "welcome":
            lane.welcomed.set()
        elif kind == "pong":
            lane.editor_pong.set()
        elif kind != "status":
            stats.unexpected[f"editor: {kind} {message.get('code', '')}".strip()] += 1


def _ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1)


async def _open(url: str, headers: dict[str, str], compression: bool) -> ClientConnection:
    return await connect(
        url,
        additional_headers=headers,
        compression="deflate" if compression else None,
        ping_interval=None,  # the server pings every 20 s; the client just answers
        open_timeout=60,
        proxy=None,
    )


async def _bounded(coros: list[Any], limit: int = SETUP_CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def open_agents(
    lanes: list[Lane], base: str, stats: Stats, tasks: list[asyncio.Task[None]], compression: bool
) -> None:
    """Connect every agent (warm machine, no session yet) and wait until its hello is handled."""

    async def one(lane: Lane) -> None:
        headers = {"authorization": f"Bearer {lane.machine_token}", "x-machine-id": lane.machine_id}
        lane.agent = await _open(f"{_ws_url(base)}/api/sandbox/ws", headers, compression)
        tasks.append(asyncio.create_task(agent_reader(lane, stats)))
        await lane.agent.send(
            _frame("hello", machineId=lane.machine_id, session=None, appliedSeq=0)
        )
        # Frames are handled in order: the pong means the hello was too.
        await lane.agent.send(_frame("ping"))
        await asyncio.wait_for(lane.agent_pong.wait(), 30)

    await _bounded([one(lane) for lane in lanes])


async def lease_sessions(lanes: list[Lane], base: str, users: list[User]) -> None:
    """Lease one session per lane through the HTTP API; each agent must then get `assign`."""
    by_machine = {lane.machine_id: lane for lane in lanes}
    errors: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30.0) as client:

        async def one(i: int) -> None:
            user = users[i % len(users)]
            reply = await client.post(
                SESSIONS, headers=user.headers, json={"projectId": str(user.project_id)}
            )
            if reply.status_code != 201:
                errors[f"{reply.status_code} {reply.text[:80]}"] += 1
                return
            body = reply.json()
            lane = by_machine[body["machineId"]]
            lane.session_id, lane.session_token = body["id"], body["token"]

        await _bounded([one(i) for i in range(len(lanes))], 20)
    if errors:
        raise RuntimeError(f"leases failed: {dict(errors)}")
    await asyncio.wait_for(asyncio.gather(*(lane.assigned.wait() for lane in lanes)), 60)


async def open_editors(
    lanes: list[Lane], base: str, stats: Stats, tasks: list[asyncio.Task[None]], compression: bool
) -> None:
    async def one(lane: Lane) -> None:
        url = f"{_ws_url(base)}{SESSIONS}/{lane.session_id}/ws?token={lane.session_token}"
        lane.editor = await _open(url, {}, compression)
        tasks.append(asyncio.create_task(editor_reader(lane, stats)))
        await lane.editor.send(_frame("hello", lastSeq=0))
        await asyncio.wait_for(lane.welcomed.wait(), 30)

    await _bounded([one(lane) for lane in lanes])


async def keep_alive(lanes: list[Lane]) -> None:
    """A ping on every socket (setup may have taken a while; idle sockets close after 60 s)."""
    for lane in lanes:
        lane.agent_pong.clear()
        lane.editor_pong.clear()
        assert lane.agent is not None and lane.editor is not None
        await lane.agent.send(_frame("ping"))
        await lane.editor.send(_frame("ping"))
    waits = [lane.agent_pong.wait() for lane in lanes] + [lane.editor_pong.wait() for lane in lanes]
    await asyncio.wait_for(asyncio.gather(*waits), 30)


_FILLER = "x" * 48


async def send_load(lanes: list[Lane], rate: float, seconds: float, stats: Stats) -> None:
    """Open loop: by time t, rate * t patches have been sent, round-robin over the sessions."""
    count = len(lanes)
    sent = 0
    started = time.perf_counter()
    stop_at = started + seconds
    while (now := time.perf_counter()) < stop_at:
        for _ in range(int((now - started) * rate) - sent):
            lane = lanes[sent % count]
            seq = len(lane.sent_at) + 1
            sent_at = time.perf_counter()
            content = f"export const v = {seq}; // {_FILLER} {sent_at:.6f}"
            lane.sent_at.append(sent_at)
            lane.acked.append(0)
            lane.applied.append(0)
            if stats.measured(sent_at):
                stats.sent_in_window += 1
            assert lane.editor is not None
            try:
                await lane.editor.send(
                    _frame("patch", seq=seq, changes=[{"path": "src/App.jsx", "content": content}])
                )
            except ConnectionClosed:
                stats.unexpected["editor: patch not sent, socket closed"] += 1
            sent += 1
        await asyncio.sleep(SEND_TICK_SECONDS)


async def watch_lag(stats: Stats, stop: asyncio.Event) -> None:
    """This process's event-loop lag: how late a 5 ms sleep wakes up, in the measured window."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(LAG_TICK_SECONDS)
        after = time.perf_counter()
        if stats.measured(before):
            stats.lag.append((after - before - LAG_TICK_SECONDS) * 1000)


def _progress(lanes: list[Lane]) -> int:
    return sum(lane.relayed_next + sum(lane.acked) + sum(lane.applied) for lane in lanes)


async def drain(lanes: list[Lane]) -> float:
    """Wait until every patch was relayed, acked and reported applied. An overloaded server
    may still be working off a backlog: wait while anything moves, give up after
    DRAIN_STALL_SECONDS without progress (what is missing then is lost)."""
    started = moved = time.perf_counter()
    last = -1
    while (now := time.perf_counter()) - started < DRAIN_MAX_SECONDS:
        if all(lane.settled() for lane in lanes):
            break
        if (progress := _progress(lanes)) != last:
            last, moved = progress, now
        elif now - moved > DRAIN_STALL_SECONDS:
            break
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


# --- a phase ------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    webs: int
    sessions: int
    rate: float
    seconds: float
    stats: Stats
    cpu: CpuShare
    sent_total: int = 0
    lost: int = 0  # seqs an agent never received
    lost_on_intact: int = 0  # `loss`, counted only in sessions whose sockets both stayed open
    duplicated: int = 0
    out_of_order: int = 0
    acks_missing: int = 0
    applied_missing: int = 0
    drain_seconds: float = 0.0
    setup_seconds: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.stats.sent_in_window / self.seconds if self.seconds else 0.0

    @property
    def served_rate(self) -> float:
        """Acks per second during the window: what the server got through. Below the send
        rate, the server is saturated and a backlog grows."""
        return self.stats.acked_in_window / self.seconds if self.seconds else 0.0

    @property
    def web_cpu_per_patch_us(self) -> float:
        """CPU of all web processes per patch served (patch, ack, relay, applied in and out)."""
        rate = self.served_rate
        return sum(self.cpu.webs) / 100 / rate * 1e6 if rate else math.nan

    @property
    def loss(self) -> int:
        return self.lost + self.duplicated + self.out_of_order + self.acks_missing

    def figures(self, name: str) -> tuple[float, float, float]:
        values: list[float] = getattr(self.stats, name)
        return percentile(values, 50), percentile(values, 99), max(values, default=math.nan)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "webs": self.webs,
            "sessions": self.sessions,
            "sockets": 2 * self.sessions,
            "target_rate": self.rate,
            "measured_seconds": self.seconds,
            "sent_total": self.sent_total,
            "sent_measured": self.stats.sent_in_window,
            "achieved_rate": round(self.achieved_rate, 1),
            "served_rate": round(self.served_rate, 1),
            "lost": self.lost,
            "loss_in_intact_sessions": self.lost_on_intact,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "acks_missing": self.acks_missing,
            "applied_missing": self.applied_missing,
            "unexpected_frames": dict(self.stats.unexpected),
            "drain_seconds": round(self.drain_seconds, 2),
            "web_cpu_per_patch_us": round(self.web_cpu_per_patch_us),
            "cpu_pct": {
                "webs": [round(w, 1) for w in self.cpu.webs],
                "web_kernel_share": round(self.cpu.web_system, 1),
                "bench": round(self.cpu.bench, 1),
                "redis": round(self.cpu.redis, 1),
                "postgres": round(self.cpu.postgres, 1),
                "other": round(self.cpu.other, 1),
                "machine_busy": round(self.cpu.busy, 1),
            },
        }
        for name in ("relay", "ack", "applied", "lag"):
            p50, p99, top = self.figures(name)
            out[f"{name}_ms"] = {"p50": round(p50, 2), "p99": round(p99, 2), "max": round(top, 2)}
        return out


def check_delivery(result: PhaseResult, lanes: list[Lane]) -> None:
    for lane in lanes:
        sent = len(lane.sent_at)
        result.sent_total += sent
        # The agent's position counts every seq up to it; a hole was counted as a gap on the way.
        lost = max(0, sent - (lane.relayed_next - 1))
        result.lost += lost
        if not lane.dropped:
            result.lost_on_intact += (
                lost + lane.relayed_dup + lane.relayed_gap + sent - sum(lane.acked)
            )
        result.duplicated += lane.relayed_dup
        result.out_of_order += lane.relayed_gap
        result.acks_missing += sent - sum(lane.acked)
        result.applied_missing += sent - sum(lane.applied)


async def close_all(lanes: list[Lane], tasks: list[asyncio.Task[None]], stats: Stats) -> None:
    stats.closing = True
    sockets = [s for lane in lanes for s in (lane.editor, lane.agent) if s is not None]
    await _bounded([s.close() for s in sockets], 200)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_phase(
    args: argparse.Namespace, webs: int, database_url: str, users: list[User], work_dir: Path
) -> PhaseResult:
    flush_redis()
    setup_started = time.perf_counter()
    machines = await register_machines(args.sessions)
    lanes = [Lane(m, token) for m, token in machines.items()]
    env = web_env(database_url, work_dir / "data", args.server_deflate)
    processes: list[WebProcess] = []
    stats = Stats()
    tasks: list[asyncio.Task[None]] = []
    try:
        for i in range(webs):
            processes.append(WebProcess(f"web{webs}-{i}", env, work_dir))
        for process in processes:
            await process.wait_healthy()
        editor_web, agent_web = processes[0], processes[-1]
        print(f"  {len(lanes)} agents -> {agent_web.url} ...", flush=True)
        await open_agents(lanes, agent_web.url, stats, tasks, args.compression)
        print(f"  {len(lanes)} leases via {editor_web.url} ...", flush=True)
        await lease_sessions(lanes, editor_web.url, users)
        print(f"  {len(lanes)} editors -> {editor_web.url} ...", flush=True)
        await open_editors(lanes, editor_web.url, stats, tasks, args.compression)
        await keep_alive(lanes)
        setup_seconds = time.perf_counter() - setup_started
        print(
            f"  sending {args.rate:g} patches/s for {args.warmup:g} s warm-up + "
            f"{args.seconds:g} s measured ...",
            flush=True,
        )
        meter = CpuMeter([p.pid for p in processes])
        stop_lag = asyncio.Event()
        lag_task = asyncio.create_task(watch_lag(stats, stop_lag))
        load = asyncio.create_task(send_load(lanes, args.rate, args.warmup + args.seconds, stats))
        now = time.perf_counter()
        stats.start, stats.end = now + args.warmup, now + args.warmup + args.seconds
        await asyncio.sleep(args.warmup)
        meter.start()
        profiler = (
            Profiler(args.profile_web, f"{webs}web", [p.pid for p in processes], args.seconds)
            if args.profile_web
            else None
        )
        await load
        cpu = meter.stop()
        stop_lag.set()
        await lag_task
        drain_seconds = await drain(lanes)
        if profiler is not None:
            profiler.wait()
        result = PhaseResult(webs, len(lanes), args.rate, args.seconds, stats, cpu)
        result.drain_seconds, result.setup_seconds = drain_seconds, setup_seconds
        check_delivery(result, lanes)
        for process in processes:
            if not process.alive():
                raise RuntimeError(f"a web process exited:\n{process.log_tail()}")
        return result
    finally:
        await close_all(lanes, tasks, stats)
        for process in processes:
            process.stop()
            if tail := process.log_tail(8):
                print(f"  {process.log_path.name} (last lines):\n{tail}", flush=True)
        flush_redis()


# --- the report ---------------------------------------------------------------------------------


def _triple(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def print_report(
    machine: dict[str, Any], args: argparse.Namespace, phases: list[PhaseResult]
) -> None:
    print()
    print(
        f"gateway fan-out: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['cpu']}; Python {machine['python']}; load average at start "
        f"{' '.join(f'{x:.2f}' for x in machine['loadavg'])}"
    )
    print(
        f"{args.sessions} sessions ({2 * args.sessions} sockets) from one load generator; "
        f"{args.rate:g} patches/s for {args.seconds:g} s (after {args.warmup:g} s warm-up); "
        f"clients offer deflate: {'yes' if args.compression else 'no'}; "
        f"server accepts it: {'yes' if args.server_deflate else 'no'}"
    )
    print()
    columns = [f"{p.webs} web{'s' if p.webs > 1 else ''}" for p in phases]
    rows: list[tuple[str, list[str]]] = [
        ("patches sent (measured)", [f"{p.stats.sent_in_window}" for p in phases]),
        ("send rate achieved /s", [f"{p.achieved_rate:.0f}" for p in phases]),
        ("acked /s (server throughput)", [f"{p.served_rate:.0f}" for p in phases]),
        ("relay ms p50 / p99 / max", [_triple(p.figures("relay")) for p in phases]),
        ("ack ms p50 / p99 / max", [_triple(p.figures("ack")) for p in phases]),
        ("applied ms p50 / p99 / max", [_triple(p.figures("applied")) for p in phases]),
        (
            "lost / dup / out of order",
            [f"{p.lost} / {p.duplicated} / {p.out_of_order}" for p in phases],
        ),
        (
            "loss where no socket closed",
            [f"{p.lost_on_intact}" for p in phases],
        ),
        (
            "acks / applied missing",
            [f"{p.acks_missing} / {p.applied_missing}" for p in phases],
        ),
        ("unexpected frames", [f"{sum(p.stats.unexpected.values())}" for p in phases]),
        ("drained after sending, s", [f"{p.drain_seconds:.1f}" for p in phases]),
        (
            "client loop lag ms p99 / max",
            [f"{p.figures('lag')[1]:.1f} / {p.figures('lag')[2]:.1f}" for p in phases],
        ),
        (
            "cpu web % (each); kernel",
            [
                "+".join(f"{w:.0f}" for w in p.cpu.webs) + f"; {p.cpu.web_system:.0f}% of it"
                for p in phases
            ],
        ),
        ("web cpu per patch, us", [f"{p.web_cpu_per_patch_us:.0f}" for p in phases]),
        ("cpu load generator %", [f"{p.cpu.bench:.0f}" for p in phases]),
        ("cpu redis / postgres %", [f"{p.cpu.redis:.0f} / {p.cpu.postgres:.0f}" for p in phases]),
        ("cpu other %", [f"{p.cpu.other:.0f}" for p in phases]),
        ("machine busy % (all cores)", [f"{p.cpu.busy:.0f}" for p in phases]),
    ]
    width = max(26, *(len(r[1][i]) + 2 for r in rows for i in range(len(phases))))
    print(f"{'':<28}" + "".join(f"{c:>{width}}" for c in columns))
    for name, cells in rows:
        print(f"{name:<28}" + "".join(f"{c:>{width}}" for c in cells))
    print("  cpu: % of one core over the measured window; other: the rest of the machine")
    for p in phases:
        if p.stats.unexpected:
            print(f"  {p.webs} web(s) unexpected frames: {dict(p.stats.unexpected)}")
    print()
    print(f"{'target':<28}" + "".join(f"{c:>{width}}" for c in columns))
    relay = [
        f"{p.figures('relay')[1]:.1f} ms {verdict(p.figures('relay')[1] <= RELAY_P99_TARGET_MS)}"
        for p in phases
    ]
    loss = [f"{p.loss} {verdict(p.loss == 0)}" for p in phases]
    print(
        f"{f'p99 relay <= {RELAY_P99_TARGET_MS:g} ms':<28}"
        + "".join(f"{c:>{width}}" for c in relay)
    )
    print(f"{'no loss':<28}" + "".join(f"{c:>{width}}" for c in loss))
    print("  loss: seqs an agent never got + duplicates + out of order + patches never acked")


def passed(phase: PhaseResult) -> bool:
    return phase.figures("relay")[1] <= RELAY_P99_TARGET_MS and phase.loss == 0


# --- main ---------------------------------------------------------------------------------------


def raise_fd_limit(sockets: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + 1024
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def run(args: argparse.Namespace, database_url: str, work_dir: Path) -> dict[str, Any]:
    machine = machine_description()
    users = make_users(database_url, max(1, math.ceil(args.sessions / SESSIONS_PER_USER)))
    phases: list[PhaseResult] = []
    for webs in args.webs:
        print(f"phase: {webs} web process(es), {args.sessions} sessions", flush=True)
        phases.append(await run_phase(args, webs, database_url, users, work_dir))
    print_report(machine, args, phases)
    return {
        "machine": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "phases": [p.as_dict() for p in phases],
        "passed": all(passed(p) for p in phases),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.gateway_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sessions", type=int, help="sessions (editor + agent each; 500)")
    parser.add_argument("--rate", type=float, help="patches per second, all sessions (2000)")
    parser.add_argument("--seconds", type=float, help="measured seconds (20)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds of load first (3)")
    parser.add_argument(
        "--webs",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="web processes per phase: 1, 2 or 1,2 (default 1,2: both, side by side)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 sessions, 5 s")
    parser.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="clients do not offer permessage-deflate (browsers do; the default offers it)",
    )
    parser.add_argument(
        "--server-deflate",
        action="store_true",
        help="the server accepts permessage-deflate (PREVIEW_WS_DEFLATE; off by default)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--profile-web",
        type=Path,
        help="py-spy the web process(es) over the measured window: collapsed stacks in DIR",
    )
    args = parser.parse_args(argv)
    defaults = {"sessions": 500, "rate": 2000.0, "seconds": 20.0, "warmup": 3.0}
    if args.quick:
        defaults = {"sessions": 100, "rate": 400.0, "seconds": 5.0, "warmup": 1.0}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.sessions < 1 or args.rate <= 0 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--sessions, --rate and --seconds must be positive")
    if not args.webs or any(n not in (1, 2) for n in args.webs):
        parser.error("--webs takes 1, 2 or 1,2")
    return args


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit(2 * args.sessions)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp,
            fresh_database() as database_url,
        ):
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                summary = runner.run(run(args, database_url, Path(tmp)))
    finally:
        flush_redis()
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
