"""The arq jobs against real Redis, real Postgres and the real LocalProvider (machines are local
processes; every test destroys the ones it made)."""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from arq.connections import ArqRedis

from app.server import create_app
from app.settings import Settings
from pool.core.provider import MachineSpec, MachineState
from pool.core.states import PoolState
from pool.providers.local import LocalProvider
from pool.services.lifecycle import Recycled
from pool.services.ondemand import Booted
from pool.services.reconciler import reconcile
from pool.services.refill import RefillSettings, boot_into_pool
from pool.store.leasing import Leased, LeaseRequest
from pool.store.redis_errors import resolved
from pool.store.store_identity import identity_key
from sql.pool_targets import PoolTarget, set_target
from sql.sessions import record_session
from tests.conftest import REDIS_URL, User, make_user, new_session
from tests.integration.helpers import POOL, destroy_all_machines, fill_ready, make_idle
from workers import jobs
from workers.config import WorkerConfig
from workers.context import WorkerContext
from workers.settings import build_worker

BOOT_TIMEOUT = 20.0


def _config(settings: Settings, base_dir: Path, bounds: tuple[int, int]) -> WorkerConfig:
    return WorkerConfig(
        database_url=settings.database_url or "",
        redis_url=REDIS_URL,
        provider_factory=lambda _redis: LocalProvider(base_dir),
        default_pools=[POOL],
        default_bounds=bounds,
        refill=RefillSettings(refill_seconds=5.0, headroom=0.5, boot_timeout=BOOT_TIMEOUT),
        pending_ttl_ms=10_000,
        ondemand_max=2,
        reap_interval_seconds=5,
    )


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    return tmp_path / "provider"


@pytest.fixture
async def deps(settings: Settings, base_dir: Path, arq: ArqRedis) -> AsyncIterator[WorkerContext]:
    context = await WorkerContext.open(_config(settings, base_dir, (2, 4)), arq)
    try:
        yield context
    finally:
        try:
            await destroy_all_machines(base_dir)
        finally:
            await context.close()


@pytest.fixture
def ctx(deps: WorkerContext) -> dict[str, Any]:
    return {"deps": deps, "redis": deps.arq}


async def _provider_ids(deps: WorkerContext) -> set[str]:
    return {m.id for m in await deps.provider.list()}


async def _lease(deps: WorkerContext, user_id: uuid.UUID, session_id: uuid.UUID) -> Leased:
    outcome = await deps.broker.lease(
        LeaseRequest(
            template=POOL.template,
            region=POOL.region,
            user_id=user_id,
            session_id=session_id,
            max_concurrent=3,
            creations_per_minute=60,
            creation_burst=10,
        )
    )
    assert isinstance(outcome, Leased), outcome
    return outcome


async def _lease_and_commit(deps: WorkerContext, user: User) -> tuple[uuid.UUID, Leased]:
    """What the API's lease path does: reserve in Redis, commit in Postgres, promote."""
    session_id = uuid.uuid4()
    leased = await _lease(deps, user.id, session_id)
    async with deps.db.connection() as conn:
        await record_session(
            conn,
            new_session(session_id, user.id, user.project_id, POOL.template, POOL.region),
            max_concurrent=3,
            machine_id=leased.machine_id,
            epoch=leased.epoch,
        )
    assert await deps.broker.promote(leased.machine_id, leased.epoch, session_id)
    return session_id, leased


def _session(database_url: str, session_id: uuid.UUID) -> tuple[str, str | None, str | None]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT status, end_reason, container_id FROM preview_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
    assert row is not None
    return str(row[0]), row[1], row[2]


async def test_resize_grows_an_empty_pool_to_min_and_shrinks_it_when_max_is_lowered(
    settings: Settings, deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    grown = await jobs.resize(ctx, POOL.template, POOL.region)

    assert grown == {str(POOL): {"target": 2, "create": 2, "destroy": 0}}
    machines = await deps.inventory.machines(POOL)
    assert [m.state for m in machines] == [PoolState.READY] * 2
    assert {m.id for m in machines} == await _provider_ids(deps)
    assert sorted(await resolved(deps.redis.lrange(f"po:ready:{POOL}", 0, -1))) == sorted(
        m.id for m in machines
    )
    for machine in machines:
        seen = await deps.provider.get(machine.id)
        assert seen.state is MachineState.STARTED and seen.healthy
        assert seen.address == machine.address
    # Run again: already at target, nothing to do.
    assert (await jobs.resize(ctx, POOL.template, POOL.region))[str(POOL)]["create"] == 0

    async with deps.db.connection() as conn:
        await set_target(conn, PoolTarget(POOL.template, POOL.region, 1, 1), None)
    shrunk = await jobs.resize(ctx)

    assert shrunk[str(POOL)] == {"target": 1, "create": 0, "destroy": 1}
    [left] = await deps.inventory.machines(POOL)
    assert left.state is PoolState.READY
    assert await _provider_ids(deps) == {left.id}
    assert await resolved(deps.redis.lrange(f"po:ready:{POOL}", 0, -1)) == [left.id]


async def test_recycle_resets_a_released_machine_and_a_duplicate_is_skipped(
    deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    machine_id = await boot_into_pool(deps.inventory, deps.provider, POOL, deps.config.refill)
    leased = await _lease(deps, uuid.uuid4(), session_id := uuid.uuid4())
    assert leased.machine_id == machine_id
    assert await deps.broker.promote(machine_id, leased.epoch, session_id)
    used = await deps.provider.get(machine_id)
    leftover = Path(used.metadata["workspace"]) / "secret.txt"
    leftover.write_text("the previous session's file")
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        assert (await http.get(f"{used.address}/secret.txt")).status_code == 200

        assert await deps.broker.release(machine_id, leased.epoch)
        outcome = await jobs.recycle(ctx, machine_id, leased.epoch + 1)

        assert outcome == Recycled.READY.value
        record = await deps.inventory.machine(machine_id)
        assert record is not None and record.state is PoolState.READY
        assert record.epoch == leased.epoch + 2
        assert record.session_id is None and record.user_id is None
        assert await resolved(deps.redis.lrange(f"po:ready:{POOL}", 0, -1)) == [machine_id]
        clean = await deps.provider.get(machine_id)
        assert clean.state is MachineState.STARTED and clean.healthy
        assert not leftover.exists()
        assert list(Path(clean.metadata["workspace"]).iterdir()) == []
        assert clean.metadata["token"] != used.metadata["token"]
        assert (await http.get(f"{record.address}/secret.txt")).status_code == 404

    pid = clean.metadata["pid"]
    assert await jobs.recycle(ctx, machine_id, leased.epoch + 1) == Recycled.SKIPPED.value
    again = await deps.inventory.machine(machine_id)
    assert again == record
    assert (await deps.provider.get(machine_id)).metadata["pid"] == pid  # not reset twice
    assert await resolved(deps.redis.lrange(f"po:ready:{POOL}", 0, -1)) == [machine_id]


async def test_reap_ends_an_idle_session_and_queues_the_recycle(
    settings: Settings, deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    database_url = settings.database_url or ""
    [machine] = await fill_ready(deps.redis, 1)
    # A store that has run before (its first tick would reconcile, and these machines have no
    # processes behind them).
    await deps.redis.set(identity_key(), "test")
    user = make_user(database_url)
    session_id, leased = await _lease_and_commit(deps, user)
    assert (await jobs.reap(ctx))["ended"] == 0  # fresh: not idle yet
    make_idle(database_url, session_id)

    report = await jobs.reap(ctx)

    assert report["ended"] == 1
    assert _session(database_url, session_id) == ("ended", "idle_timeout", machine)
    record = await deps.inventory.machine(machine)
    assert record is not None and record.state is PoolState.RECYCLING
    assert record.epoch == leased.epoch + 1
    assert await resolved(deps.redis.smembers(f"po:user:{user.id}")) == set()
    with psycopg.connect(database_url) as conn:
        released = conn.execute(
            "SELECT release_reason FROM machine_leases WHERE machine_id = %s", (machine,)
        ).fetchall()
    assert released == [("idle_timeout",)]
    queued = [(j.function, j.args) for j in await deps.arq.queued_jobs()]
    assert ("recycle", (machine, leased.epoch + 1)) in queued
    assert await deps.arq.exists(f"arq:job:recycle:{machine}:{leased.epoch + 1}")
    # Reaping again finds nothing more to do.
    assert (await jobs.reap(ctx))["ended"] == 0


async def test_reconcile_destroys_orphans_and_drops_records_of_dead_machines(
    settings: Settings, deps: WorkerContext
) -> None:
    database_url = settings.database_url or ""
    ready_id, leased_id = await asyncio.gather(
        boot_into_pool(deps.inventory, deps.provider, POOL, deps.config.refill),
        boot_into_pool(deps.inventory, deps.provider, POOL, deps.config.refill),
    )
    user = make_user(database_url)
    session_id, leased = await _lease_and_commit(deps, user)
    assert leased.machine_id in (ready_id, leased_id)
    if leased.machine_id == ready_id:
        ready_id, leased_id = leased_id, ready_id
    orphan = await deps.provider.create(MachineSpec(POOL.template, POOL.region))
    orphan_pid = int(orphan.metadata["pid"])
    # Both tracked machines die behind the pool's back.
    await deps.provider.destroy(ready_id)
    await deps.provider.destroy(leased_id)

    report = await reconcile(
        deps.services,
        orphan_grace_seconds=0,
    )

    assert report.orphans_destroyed == 1
    assert report.records_dropped == 2
    assert report.sessions_failed == 1
    assert await deps.provider.list() == []
    with pytest.raises(ProcessLookupError):
        os.kill(orphan_pid, 0)
    assert await deps.inventory.machines(POOL) == []
    assert await deps.redis.exists(f"po:m:{ready_id}", f"po:m:{leased_id}") == 0
    assert await resolved(deps.redis.llen(f"po:ready:{POOL}")) == 0
    assert _session(database_url, session_id) == ("failed", "machine_lost", leased_id)
    assert await resolved(deps.redis.smembers(f"po:user:{user.id}")) == set()
    with psycopg.connect(database_url) as conn:
        unreleased = conn.execute(
            "SELECT count(*) FROM machine_leases WHERE released_at IS NULL"
        ).fetchone()
    assert unreleased == (0,)
    assert [j for j in await deps.arq.queued_jobs() if j.function == "recycle"] == []
    # A second pass finds the three stores in agreement.
    again = await reconcile(deps.services, orphan_grace_seconds=0)
    assert (again.orphans_destroyed, again.records_dropped, again.sessions_failed) == (0, 0, 0)


async def test_boot_session_attaches_an_on_demand_machine_to_a_booting_session(
    settings: Settings, deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    user = make_user(settings.database_url or "")
    app = create_app(settings)  # the pool is empty and on-demand boots are allowed: 202
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        created = await api.post(
            "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
        )
        assert created.status_code == 202, created.text
        assert created.json()["status"] == "booting" and created.json()["machineId"] is None
        session_id = created.json()["id"]
        queued = {j.job_id: (j.function, j.args) for j in await deps.arq.queued_jobs()}
        assert queued[f"boot:{session_id}"] == ("boot_session", (session_id,))

        assert await jobs.boot_session(ctx, session_id) == Booted.ATTACHED.value

        view = (await api.get(f"/api/preview/sessions/{session_id}", headers=user.headers)).json()
    assert view["status"] == "active"
    machine_id = view["machineId"]
    record = await deps.inventory.machine(machine_id)
    assert record is not None and record.state is PoolState.LEASED
    assert record.session_id == session_id and record.user_id == str(user.id)
    with psycopg.connect(settings.database_url or "") as conn:
        row = conn.execute(
            "SELECT lease_epoch FROM preview_sessions WHERE id = %s", (session_id,)
        ).fetchone()
        ledger = conn.execute(
            "SELECT machine_id, epoch, released_at FROM machine_leases WHERE session_id = %s",
            (session_id,),
        ).fetchall()
    assert row == (record.epoch,)
    assert ledger == [(machine_id, record.epoch, None)]
    assert await deps.redis.zcard(f"po:booting-sessions:{POOL}") == 0
    assert await resolved(deps.redis.smembers(f"po:user:{user.id}")) == {session_id}
    machine = await deps.provider.get(machine_id)
    assert machine.state is MachineState.STARTED and machine.healthy
    # A second delivery of the job does nothing.
    assert await jobs.boot_session(ctx, session_id) == Booted.SKIPPED.value
    assert await _provider_ids(deps) == {machine_id}


async def test_a_burst_worker_runs_a_queued_resize(
    settings: Settings, base_dir: Path, arq: ArqRedis
) -> None:
    config = _config(settings, base_dir, (1, 2))
    await arq.enqueue_job("resize", POOL.template, POOL.region, _job_id=f"resize:{POOL}")
    worker = build_worker(config, burst=True)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=60)
        assert worker.jobs_failed == 0
        assert worker.jobs_complete >= 1
        inventory = worker.ctx["deps"].inventory
        machines = await inventory.machines(POOL)
        # The queued resize and the startup resize cron may both have created one.
        assert 1 <= len(machines) <= 2
        assert {m.state for m in machines} == {PoolState.READY}
        provider = LocalProvider(base_dir)
        try:
            assert {m.id for m in await provider.list()} == {m.id for m in machines}
        finally:
            await provider.aclose()
    finally:
        try:
            await destroy_all_machines(base_dir)
        finally:
            with warnings.catch_warnings():
                # arq 0.28 closes its pool with redis-py's deprecated close().
                warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)
                await worker.close()


async def test_reap_notices_a_store_reset_and_rebuilds_the_leased_records_at_once(
    settings: Settings, deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    await boot_into_pool(deps.inventory, deps.provider, POOL, deps.config.refill)
    user = make_user(settings.database_url or "")
    _, leased = await _lease_and_commit(deps, user)
    record = f"po:m:{leased.machine_id}"
    await jobs.reap(ctx)  # the store's first tick: it takes an identity
    assert await deps.redis.exists(identity_key()) == 1

    # Redis loses everything (a restart without persistence): the next tick reconciles now,
    # not at reconcile's next scheduled run, and the leased machine's record is back.
    await deps.redis.flushdb()
    await jobs.reap(ctx)
    assert await deps.inventory.token_hash(leased.machine_id) is not None
    assert await resolved(deps.redis.hget(record, "state")) == "leased"

    # With its identity in place, a tick does not reconcile: a record lost now stays lost
    # until reconcile's own schedule.
    await deps.redis.delete(record)
    await jobs.reap(ctx)
    assert await deps.redis.exists(record) == 0


async def test_evaluate_alerts_judges_the_rules_and_keeps_its_evaluator(
    deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    deps.metrics.worker_tick()
    first = await jobs.evaluate_alerts(ctx)
    evaluator = ctx["alerts"]
    second = await jobs.evaluate_alerts(ctx)
    assert first["evaluated"] and second["evaluated"]
    assert ctx["alerts"] is evaluator  # kept across ticks (it remembers a Redis outage)
    assert len(await evaluator.store.history()) == 2
    assert second["firing"] == []  # a healthy worker, both stores up
