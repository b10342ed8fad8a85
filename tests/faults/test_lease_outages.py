"""Leases while a store is down: a real `web` process reaches Postgres (or Redis) through a TCP
proxy that the test cuts and restores, while clients keep asking for sessions, and some give up
after 0.3 s.

What must hold (docs/architecture.md, "Store outages"):
- every answer during the outage is 503 with Retry-After, and comes within the connection
  acquisition timeout plus a margin (never a 500, never the old 30 s hang);
- no session is live that its client was not told about (abandoned requests commit nothing),
  and no machine is left pending;
- once the store is back, leases succeed again without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from app.settings import Settings
from tests.conftest import REDIS_URL, User, fill_pool, make_user
from tests.faults.tcp_proxy import TcpProxy, tcp_proxy
from tests.integration.helpers import web_processes
from tests.redis_replies import sync_reply

pytestmark = pytest.mark.slow

ACQUIRE_TIMEOUT = 2.0
# An answer during an outage: the acquisition timeout, plus the lease's other steps and a
# loaded CI machine.
ANSWER_BOUND = ACQUIRE_TIMEOUT + 1.5
RECOVERY_BOUND = 10.0
READY_BOUND = 2.5  # /readyz: its checks run side by side, each bounded by 2 s
ABANDON_AFTER = 0.3


@dataclass
class Answers:
    """What the clients heard, gathered from their threads."""

    statuses: list[tuple[int, float, str | None]] = field(default_factory=list)
    known: set[str] = field(default_factory=set)
    abandoned: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: httpx.Response, elapsed: float) -> None:
        with self.lock:
            self.statuses.append((answer.status_code, elapsed, answer.headers.get("retry-after")))
            if answer.status_code in (201, 202):
                self.known.add(answer.json()["id"])


def _lease(base: str, user: User, timeout: float) -> httpx.Response:
    return httpx.post(
        f"{base}/api/preview/sessions",
        json={"projectId": str(user.project_id)},
        headers=user.headers,
        timeout=timeout,
        trust_env=False,
    )


def _steady_client(base: str, user: User, answers: Answers, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        answers.record(_lease(base, user, timeout=40.0), time.monotonic() - started)
        time.sleep(0.1)


def _abandoning_client(base: str, user: User, answers: Answers, stop: threading.Event) -> None:
    """Asks and gives up after ABANDON_AFTER: the request is still waiting on the server."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            answer = _lease(base, user, timeout=ABANDON_AFTER)
        except httpx.TimeoutException:
            with answers.lock:
                answers.abandoned += 1
        else:
            answers.record(answer, time.monotonic() - started)
        time.sleep(0.2)


@dataclass
class Outage:
    base: str
    user: User
    proxy: TcpProxy
    # Requests wait on the server (for a Postgres connection) long enough for a client to
    # give up; with Redis down the lease script fails at once.
    requests_wait: bool
    store: str  # the /readyz check that must name the outage


@pytest.fixture
def postgres_proxy(settings: Settings) -> Iterator[TcpProxy]:
    with tcp_proxy(settings.database_url or "") as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(settings: Settings) -> Iterator[TcpProxy]:
    with tcp_proxy(REDIS_URL) as proxy:
        yield proxy


def _user(database_url: str) -> User:
    return make_user(database_url, max_concurrent=1000, per_minute=100_000, burst=100_000)


def _live_sessions(database_url: str, user: User) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM preview_sessions WHERE user_id = %s AND status IN "
            "('active', 'booting')",
            (user.id,),
        ).fetchall()
    return {str(r[0]) for r in rows}


def _unexplained_sessions(database_url: str, user: User, known: set[str]) -> list[tuple[str, str]]:
    """Sessions of the user that no client heard of, other than those ended as abandoned."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, status, end_reason FROM preview_sessions WHERE user_id = %s",
            (user.id,),
        ).fetchall()
    return [
        (str(r[0]), f"{r[1]}/{r[2]}")
        for r in rows
        if str(r[0]) not in known and not (r[1] == "failed" and r[2] == "abandoned")
    ]


def _pending_machines() -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(sync_reply(client.zcard("po:pending")))
    finally:
        client.close()


def _assert_not_ready(outage: Outage) -> None:
    started = time.monotonic()
    ready = httpx.get(f"{outage.base}/readyz", timeout=10.0, trust_env=False)
    elapsed = time.monotonic() - started
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"][outage.store].startswith("failing: "), ready.text
    assert elapsed <= READY_BOUND, f"/readyz took {elapsed:.1f} s"


def _run_outage(outage: Outage, seconds: float) -> Answers:
    """Cut the proxy for `seconds` with clients running; restore; wait for the first success."""
    first = _lease(outage.base, outage.user, timeout=10.0)
    assert first.status_code == 201, first.text
    answers = Answers(known={first.json()["id"]})
    stop = threading.Event()
    threads = [
        threading.Thread(target=_steady_client, args=(outage.base, outage.user, answers, stop)),
        threading.Thread(target=_steady_client, args=(outage.base, outage.user, answers, stop)),
        threading.Thread(target=_abandoning_client, args=(outage.base, outage.user, answers, stop)),
    ]
    outage.proxy.cut()
    cut_at = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(max(0.0, seconds - READY_BOUND))
        _assert_not_ready(outage)
        time.sleep(max(0.0, seconds - (time.monotonic() - cut_at)))
        with answers.lock:
            during = list(answers.statuses)
        outage.proxy.restore()
        restored_at = time.monotonic()
        while time.monotonic() - restored_at < RECOVERY_BOUND:
            answer = _lease(outage.base, outage.user, timeout=10.0)
            answers.record(answer, 0.0)
            if answer.status_code == 201:
                break
            time.sleep(0.2)
        recovered_after = time.monotonic() - restored_at
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert during, "no answer at all during the outage"
    if outage.requests_wait:
        assert answers.abandoned > 0, "no client gave up: the abandoned case was not run"
    # Answers that began and ended during the outage: all 503 with Retry-After, all quick.
    for status, elapsed, retry_after in during:
        assert status == 503 and retry_after is not None, (status, retry_after, during)
        assert elapsed <= ANSWER_BOUND, f"an answer took {elapsed:.1f} s: {during}"
    assert len(during) >= 2 * (seconds / ANSWER_BOUND) - 2, f"too few answers: {during}"
    assert recovered_after < RECOVERY_BOUND, "no lease succeeded after the store came back"
    assert all(status != 500 for status, _, _ in answers.statuses), answers.statuses
    print(
        f"outage {time.monotonic() - cut_at:.1f} s, {len(during)} answers, recovered in "
        f"{recovered_after:.1f} s, {answers.abandoned} abandoned"
    )
    return answers


@pytest.mark.parametrize("seconds", [5, 40])
def test_postgres_outage_during_leases(
    settings: Settings, postgres_proxy: TcpProxy, tmp_path: Path, seconds: int
) -> None:
    """5 s: shorter than psycopg_pool's default wait (before: requests hung through it, and the
    abandoned ones committed when Postgres came back). 40 s: longer than that wait (before: 500
    after 30 s)."""
    database_url = settings.database_url or ""
    user = _user(database_url)
    fill_pool(60)
    env = {"PREVIEW_DB_ACQUIRE_TIMEOUT_SECONDS": str(ACQUIRE_TIMEOUT)}
    with web_processes(postgres_proxy.url(database_url), tmp_path, 1, env) as (base,):
        answers = _run_outage(
            Outage(base, user, postgres_proxy, requests_wait=True, store="postgres"), seconds
        )
    # Every committed session is one a client was told about (or was ended as abandoned).
    assert _unexplained_sessions(database_url, user, answers.known) == []
    assert _live_sessions(database_url, user) <= answers.known
    assert _pending_machines() == 0


def test_redis_outage_during_leases(
    settings: Settings, redis_proxy: TcpProxy, tmp_path: Path
) -> None:
    database_url = settings.database_url or ""
    user = _user(database_url)
    fill_pool(40)
    env = {"REDIS_URL": redis_proxy.url(REDIS_URL)}
    with web_processes(database_url, tmp_path, 1, env) as (base,):
        answers = _run_outage(
            Outage(base, user, redis_proxy, requests_wait=False, store="redis"), 3
        )
    assert _unexplained_sessions(database_url, user, answers.known) == []
    assert _live_sessions(database_url, user) <= answers.known
    assert _pending_machines() == 0
