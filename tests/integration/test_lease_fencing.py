"""Fencing: a lease whose API process died mid-way is settled by the reaper, and a stale lease
holder (an older epoch) can change nothing. Real Redis, real Postgres, a real SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from app.settings import Settings
from pool.core.states import PoolState
from pool.providers.local import LocalProvider
from pool.services.context import PoolServices
from pool.services.metrics import NullMetrics
from pool.services.reaper import reap
from pool.store.inventory import Inventory
from pool.store.leasing import Heartbeat, LeaseBroker, Leased, LeaseRequest
from pool.store.redis_errors import resolved
from sql.database import open_pool
from sql.errors import LedgerConflict
from sql.sessions import NewSession, end_session, record_session
from sql.states import SessionStatus
from tests.conftest import REDIS_URL, User, make_user, new_session
from tests.integration.helpers import POOL, REPO_ROOT, fill_ready

PENDING_TTL_MS = 1000


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(settings.database_url or "", min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def broker(redis_client: Redis) -> LeaseBroker:
    return LeaseBroker(redis_client, pending_ttl_ms=PENDING_TTL_MS, ondemand_max=0)


class RecycleLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, machine_id: str, epoch: int) -> None:
        self.calls.append((machine_id, epoch))


@pytest.fixture
def recycle() -> RecycleLog:
    return RecycleLog()


@pytest.fixture
async def services(
    db: AsyncConnectionPool, broker: LeaseBroker, recycle: RecycleLog, tmp_path: Path
) -> AsyncIterator[PoolServices]:
    # The reaper never touches a machine, but the services it is handed carry a provider.
    provider = LocalProvider(tmp_path / "machines", isolate=False)
    try:
        yield PoolServices(db, broker, Inventory(broker.redis), provider, recycle, NullMetrics())
    finally:
        await provider.aclose()


def _new_session(user: User, session_id: uuid.UUID) -> NewSession:
    return new_session(session_id, user.id, user.project_id, POOL.template, POOL.region)


def _request(user_id: uuid.UUID, session_id: uuid.UUID) -> LeaseRequest:
    return LeaseRequest(
        template=POOL.template,
        region=POOL.region,
        user_id=user_id,
        session_id=session_id,
        max_concurrent=3,
        creations_per_minute=20,
        creation_burst=10,
    )


async def _lease_in_a_process_that_dies(
    settings: Settings, user: User, session_id: uuid.UUID, mode: str
) -> tuple[str, int]:
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable, "-m", "tests.integration.lease_crash",
            REDIS_URL, settings.database_url or "",
            str(user.id), str(user.project_id), str(session_id),
            str(PENDING_TTL_MS), mode,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr
    lease = json.loads(result.stdout)
    return str(lease["machine"]), int(lease["epoch"])


async def _redis_now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _sleep_past_deadline(redis: Redis, machine_id: str) -> None:
    deadline = int(await resolved(redis.hget(f"po:m:{machine_id}", "pending_until")) or 0)
    wait_ms = deadline - await _redis_now_ms(redis)
    await asyncio.sleep(max(0.0, wait_ms / 1000) + 0.05)


def _ledger(database_url: str, machine_id: str) -> list[tuple[int, str, bool]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT epoch, kind, released_at IS NOT NULL FROM machine_leases "
            "WHERE machine_id = %s ORDER BY epoch",
            (machine_id,),
        ).fetchall()
    return [(int(e), str(k), bool(r)) for e, k, r in rows]


def _session_status(database_url: str, session_id: uuid.UUID) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status FROM preview_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    return None if row is None else str(row[0])


async def test_a_lease_whose_api_died_before_the_commit_is_fenced_and_given_back(
    settings: Settings,
    redis_client: Redis,
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    services: PoolServices,
    recycle: RecycleLog,
) -> None:
    database_url = settings.database_url or ""
    [machine] = await fill_ready(redis_client, 1)
    user = make_user(database_url)
    session_id = uuid.uuid4()

    machine_id, epoch = await _lease_in_a_process_that_dies(settings, user, session_id, "reserve")

    assert machine_id == machine
    pending = await resolved(redis_client.hgetall(f"po:m:{machine}"))
    assert pending["state"] == "pending" and pending["session"] == str(session_id)
    leased_at = int(pending["leased_at"])
    if await _redis_now_ms(redis_client) < int(pending["pending_until"]) - 300:
        # Before its deadline the lease is left alone: the API may still be committing it.
        early = await reap(services)
        assert early.reclaimed == 0 and early.promoted == 0
        assert await resolved(redis_client.hget(f"po:m:{machine}", "state")) == "pending"

    await _sleep_past_deadline(redis_client, machine)
    report = await reap(services)

    # Reclaimed within the pending TTL plus one reap interval of the lease.
    reclaimed_after_ms = await _redis_now_ms(redis_client) - leased_at
    assert reclaimed_after_ms <= PENDING_TTL_MS + settings.preview_reap_interval_seconds * 1000
    assert (report.reclaimed, report.promoted) == (1, 0)
    record = await resolved(redis_client.hgetall(f"po:m:{machine}"))
    assert record["state"] == PoolState.READY and int(record["epoch"]) == epoch + 1
    assert "session" not in record and "user" not in record
    assert await resolved(redis_client.lrange(f"po:ready:{POOL}", 0, -1)) == [machine]
    assert await redis_client.zcard("po:pending") == 0
    assert await resolved(redis_client.smembers(f"po:user:{user.id}")) == set()
    assert _ledger(database_url, machine) == [(epoch, "fence", True)]
    assert _session_status(database_url, session_id) is None
    assert recycle.calls == []  # nobody saw the machine: no reset needed

    # The dead API's commit, arriving late, loses to the fence and leaves nothing behind.
    async with db.connection() as conn:
        with pytest.raises(LedgerConflict):
            await record_session(
                conn,
                _new_session(user, session_id),
                max_concurrent=3,
                machine_id=machine,
                epoch=epoch,
            )
    assert _session_status(database_url, session_id) is None
    assert _ledger(database_url, machine) == [(epoch, "fence", True)]
    assert not await broker.promote(machine, epoch, session_id)
    assert (await resolved(redis_client.hgetall(f"po:m:{machine}"))) == record


async def test_a_lease_committed_but_never_promoted_is_promoted_by_the_reaper(
    settings: Settings,
    redis_client: Redis,
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    services: PoolServices,
    recycle: RecycleLog,
) -> None:
    database_url = settings.database_url or ""
    [machine] = await fill_ready(redis_client, 1)
    user = make_user(database_url)
    session_id = uuid.uuid4()

    machine_id, epoch = await _lease_in_a_process_that_dies(settings, user, session_id, "commit")

    assert machine_id == machine
    assert await resolved(redis_client.hget(f"po:m:{machine}", "state")) == "pending"
    assert _session_status(database_url, session_id) == "active"
    await _sleep_past_deadline(redis_client, machine)
    report = await reap(services)

    assert (report.reclaimed, report.promoted) == (0, 1)
    record = await resolved(redis_client.hgetall(f"po:m:{machine}"))
    assert record["state"] == PoolState.LEASED and int(record["epoch"]) == epoch
    assert record["session"] == str(session_id) and record["user"] == str(user.id)
    assert "pending_until" not in record
    assert await redis_client.zcard("po:pending") == 0
    assert await resolved(redis_client.llen(f"po:ready:{POOL}")) == 0
    assert await resolved(redis_client.smembers(f"po:user:{user.id}")) == {str(session_id)}
    assert _ledger(database_url, machine) == [(epoch, "lease", False)]
    assert _session_status(database_url, session_id) == "active"
    assert recycle.calls == []
    # The lease is the holder's for real now: its heartbeat counts, a second reap changes nothing.
    assert await broker.heartbeat(machine, epoch) is Heartbeat.RECORDED
    again = await reap(services)
    assert (again.reclaimed, again.promoted) == (0, 0)


async def test_a_committed_lease_ended_before_its_promotion_is_recycled_not_promoted(
    settings: Settings,
    redis_client: Redis,
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    services: PoolServices,
    recycle: RecycleLog,
) -> None:
    """The API abandoned the session (its client was gone) after the commit and could not reach
    Redis to release the machine: the reaper must not hand the machine to the ended session."""
    database_url = settings.database_url or ""
    [machine] = await fill_ready(redis_client, 1)
    user = make_user(database_url)
    session_id = uuid.uuid4()
    leased = await broker.lease(_request(user.id, session_id))
    assert isinstance(leased, Leased) and leased.machine_id == machine
    async with db.connection() as conn:
        await record_session(
            conn, _new_session(user, session_id), max_concurrent=3, machine_id=machine,
            epoch=leased.epoch,
        )  # fmt: skip
        assert await end_session(conn, session_id, reason="abandoned", status=SessionStatus.FAILED)
    await _sleep_past_deadline(redis_client, machine)
    report = await reap(services)

    assert (report.reclaimed, report.promoted) == (1, 0)
    record = await resolved(redis_client.hgetall(f"po:m:{machine}"))
    assert record["state"] == PoolState.RECYCLING and int(record["epoch"]) == leased.epoch + 1
    assert "session" not in record
    assert recycle.calls == [(machine, leased.epoch + 1)]
    assert await redis_client.zcard("po:pending") == 0
    assert await resolved(redis_client.smembers(f"po:user:{user.id}")) == set()
    assert _ledger(database_url, machine) == [(leased.epoch, "lease", True)]
    assert _session_status(database_url, session_id) == "failed"


async def test_a_stale_lease_holder_cannot_release_heartbeat_or_promote(
    settings: Settings, redis_client: Redis
) -> None:
    [machine] = await fill_ready(redis_client, 1)
    broker = LeaseBroker(redis_client, pending_ttl_ms=30_000, ondemand_max=0)
    inventory = Inventory(redis_client)
    key = f"po:m:{machine}"
    user_a, session_a = uuid.uuid4(), uuid.uuid4()
    user_b, session_b = uuid.uuid4(), uuid.uuid4()

    old = await broker.lease(_request(user_a, session_a))
    assert isinstance(old, Leased) and old.machine_id == machine
    assert await broker.promote(machine, old.epoch, session_a)
    assert await broker.release(machine, old.epoch)  # the session ended: to recycling
    assert await resolved(redis_client.hget(key, "state")) == PoolState.RECYCLING
    recycled_epoch = await inventory.make_ready(
        machine, POOL, "http://127.0.0.1:1/x", from_state=PoolState.RECYCLING,
        from_epoch=old.epoch + 1,
    )  # fmt: skip
    assert recycled_epoch == old.epoch + 2
    new = await broker.lease(_request(user_b, session_b))
    assert isinstance(new, Leased) and new.machine_id == machine
    assert new.epoch == old.epoch + 3

    for phase in ("pending", "leased"):
        if phase == "leased":
            assert await broker.promote(machine, new.epoch, session_b)
        before = await resolved(redis_client.hgetall(key))
        assert before["state"] == phase and before["session"] == str(session_b)
        ready_before = await resolved(redis_client.lrange(f"po:ready:{POOL}", 0, -1))

        assert not await broker.release(machine, old.epoch)
        assert not await broker.release(machine, old.epoch, return_to_ready=True)
        assert await broker.heartbeat(machine, old.epoch) is Heartbeat.STALE
        assert not await broker.promote(machine, old.epoch, session_a)
        assert not await broker.promote(machine, old.epoch, session_b)
        # A duplicate delivery of the old recycle job is fenced off too.
        assert (
            await inventory.make_ready(
                machine, POOL, "http://127.0.0.1:1/y", from_state=PoolState.RECYCLING,
                from_epoch=old.epoch + 1,
            )
            is None
        )  # fmt: skip

        assert await resolved(redis_client.hgetall(key)) == before
        assert await resolved(redis_client.lrange(f"po:ready:{POOL}", 0, -1)) == ready_before
        assert await resolved(redis_client.smembers(f"po:user:{user_a}")) == set()
        assert await resolved(redis_client.smembers(f"po:user:{user_b}")) == {str(session_b)}

    # The current holder still holds it.
    assert await broker.heartbeat(machine, new.epoch) is Heartbeat.RECORDED
    assert await resolved(redis_client.hget(key, "state")) == PoolState.LEASED
    assert await broker.release(machine, new.epoch)
    assert await resolved(redis_client.hget(key, "state")) == PoolState.RECYCLING
