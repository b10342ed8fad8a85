"""The tiered warm pool (hot, suspended, stopped) on Fly: the real worker jobs, lease API,
Redis and Postgres, with FlyProvider talking to the Fly fake (tests/fakes/fly_api.py) on a
virtual clock, so Fly's latencies and rate limits cost no real time.

Every test fails if the provider sent a request outside Fly's OpenAPI document or exceeded
Fly's rate limits (the fake counts both).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from arq.connections import ArqRedis

from app.server import create_app
from app.settings import Settings
from pool.core.policy import TierLatencies
from pool.core.provider import MachineSpec, pool_tiers
from pool.core.states import PoolState, Tier
from pool.providers.fly import FlyProvider, FlyRuntime
from pool.providers.local import LocalProvider
from pool.services.lifecycle import Recycled
from pool.services.ondemand import Booted
from pool.services.reconciler import reconcile
from pool.services.refill import RefillSettings
from pool.services.wake import Woken
from pool.store.inventory import PoolKey
from pool.store.leasing import Leased, LeaseRequest
from pool.store.redis_errors import resolved
from sql.pool_targets import PoolTarget, set_target
from tests.conftest import REDIS_URL, User, make_user
from tests.fakes.fly_api import FakeFlyAPI
from tests.fakes.fly_faults import FlyNetwork
from tests.fakes.virtual_clock import VirtualClock
from workers import jobs
from workers.config import WorkerConfig
from workers.context import WorkerContext

APP = "preview-test"
TOKEN = "test-token"
IMAGE = "registry.fly.io/preview-sandbox@sha256:" + "b" * 64
POOL = PoolKey("react-web", "ams")
SESSIONS = "/api/preview/sessions"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def fake(clock: VirtualClock) -> Iterator[FakeFlyAPI]:
    fake = FakeFlyAPI(clock)
    yield fake
    assert fake.spec_violations == [], "the provider sent requests the OpenAPI document forbids"
    assert fake.response_violations == [], "the fake answered outside the OpenAPI document"
    assert fake.rate_limit_violations == [], "the provider exceeded Fly's rate limits"


@pytest.fixture
def network(fake: FakeFlyAPI) -> FlyNetwork:
    return FlyNetwork(fake.app)


def _fly(network: FlyNetwork, clock: VirtualClock) -> FlyProvider:
    return FlyProvider(
        APP,
        TOKEN,
        IMAGE,
        regions=("ams", "fra"),
        runtime=FlyRuntime(transport=network, clock=clock.now, sleep=clock.sleep, rand=lambda: 0.5),
    )


@pytest.fixture
async def deps(
    settings: Settings, network: FlyNetwork, clock: VirtualClock, arq: ArqRedis
) -> AsyncIterator[WorkerContext]:
    config = WorkerConfig(
        database_url=settings.database_url or "",
        redis_url=REDIS_URL,
        provider_factory=lambda _redis: _fly(network, clock),
        default_pools=[],
        default_bounds=(0, 0),
        refill=RefillSettings(
            refill_seconds=15.0,
            headroom=0.0,
            max_creates_per_run=20,
            boot_timeout=60.0,
            latencies=TierLatencies(),
            max_moves_per_run=20,
        ),
        pending_ttl_ms=10_000,
        ondemand_max=100,
    )
    context = await WorkerContext.open(config, arq)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
def ctx(deps: WorkerContext) -> dict[str, Any]:
    return {"deps": deps, "redis": deps.arq}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    tuned = settings.model_copy(update={"preview_ondemand_max": 100, "preview_regions": "ams,fra"})
    app = create_app(tuned)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


async def _set_tiers(
    deps: WorkerContext,
    hot: tuple[int, int],
    suspended: tuple[int, int] = (0, 0),
    stopped: tuple[int, int] = (0, 0),
    guest: tuple[int, int] | None = None,
) -> None:
    async with deps.db.connection() as conn:
        await set_target(
            conn,
            PoolTarget(
                POOL.template,
                POOL.region,
                *hot,
                suspended_min=suspended[0],
                suspended_max=suspended[1],
                stopped_min=stopped[0],
                stopped_max=stopped[1],
                guest_cpus=guest[0] if guest else None,
                guest_memory_mb=guest[1] if guest else None,
            ),
            None,
        )


async def _settle(ctx: dict[str, Any], runs: int = 8) -> list[dict[str, Any]]:
    """Run the resize job until it has nothing left to do (or `runs` times)."""
    plans = []
    for _ in range(runs):
        plan = (await jobs.resize(ctx, POOL.template, POOL.region))[str(POOL)]
        plans.append(plan)
        if not plan["create"] and not plan["destroy"] and not plan.get("moves"):
            break
    return plans


async def _tiers(deps: WorkerContext) -> dict[Tier, list[str]]:
    """Ready machine ids per tier, from the Redis lists the lease script pops."""
    keys = {
        Tier.HOT: f"po:ready:{POOL}",
        Tier.SUSPENDED: f"po:ready-suspended:{POOL}",
        Tier.STOPPED: f"po:ready-stopped:{POOL}",
    }
    return {
        tier: sorted(await resolved(deps.redis.lrange(key, 0, -1))) for tier, key in keys.items()
    }


async def _fill(
    ctx: dict[str, Any],
    deps: WorkerContext,
    hot: int,
    suspended: int,
    stopped: int,
) -> dict[Tier, list[str]]:
    await _set_tiers(deps, (hot, hot), (suspended, suspended), (stopped, stopped))
    await _settle(ctx)
    tiers = await _tiers(deps)
    assert [len(tiers[t]) for t in Tier] == [hot, suspended, stopped], tiers
    return tiers


def _user(settings: Settings) -> User:
    return make_user(settings.database_url or "", max_concurrent=200, per_minute=6000, burst=1000)


async def _post(api: httpx.AsyncClient, user: User) -> httpx.Response:
    return await api.post(
        SESSIONS,
        json={"projectId": str(user.project_id), "region": POOL.region},
        headers=user.headers,
    )


async def _queued(deps: WorkerContext) -> dict[str, tuple[str, tuple[Any, ...]]]:
    return {str(j.job_id): (j.function, tuple(j.args)) for j in await deps.arq.queued_jobs()}


def _row(database_url: str, sql: str, *params: object) -> Any:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


# -- refill --------------------------------------------------------------------------------------


async def test_refill_boots_to_hot_then_moves_the_surplus_down_into_the_tiers(
    deps: WorkerContext, ctx: dict[str, Any], fake: FakeFlyAPI
) -> None:
    await _set_tiers(deps, (2, 2), (1, 1), (2, 2))

    first, second, third = await _settle(ctx)

    assert first == {
        "target": 5,
        "create": 5,
        "destroy": 0,
        "targets": {"hot": 2, "suspended": 1, "stopped": 2},
        "moves": [],
    }
    assert second["create"] == 0 and second["destroy"] == 0
    assert sorted((m["from"], m["to"], m["count"]) for m in second["moves"]) == [
        ("hot", "stopped", 2),
        ("hot", "suspended", 1),
    ]
    assert third["moves"] == [] and third["create"] == 0
    tiers = await _tiers(deps)
    assert [len(tiers[t]) for t in Tier] == [2, 1, 2]
    for machine_id in tiers[Tier.HOT]:
        assert fake.machines[machine_id].state == "started"
    [suspended] = tiers[Tier.SUSPENDED]
    assert fake.machines[suspended].state == "suspended" and fake.machines[suspended].snapshot
    for machine_id in tiers[Tier.STOPPED]:
        assert fake.machines[machine_id].state == "stopped"
    for tier, ids in tiers.items():
        for machine_id in ids:
            record = await deps.inventory.machine(machine_id)
            assert record is not None and record.state is PoolState.READY and record.tier is tier
            # The agent's socket is checked against the token Fly holds in the machine's env.
            assert await deps.inventory.token_hash(machine_id) == _token_hash(fake, machine_id)
    counts = await deps.inventory.counts(POOL)
    assert (counts.ready, counts.suspended, counts.stopped, counts.total) == (2, 1, 2, 5)
    # Every new machine booted hot before it moved: the snapshot holds a running dev server.
    assert len(fake.calls("Machines_create")) == 5
    assert len(fake.calls("Machines_suspend")) == 1 and len(fake.calls("Machines_stop")) == 2


async def test_a_provider_without_suspend_keeps_the_hot_tier_only(tmp_path: Path) -> None:
    local = LocalProvider(tmp_path)
    try:
        assert pool_tiers(local) == frozenset({Tier.HOT})
    finally:
        await local.aclose()


# -- leases, tier by tier ------------------------------------------------------------------------


async def test_leases_take_hot_then_suspended_then_stopped_then_boot_on_demand(
    settings: Settings,
    deps: WorkerContext,
    ctx: dict[str, Any],
    fake: FakeFlyAPI,
    api: httpx.AsyncClient,
) -> None:
    database_url = settings.database_url or ""
    tiers = await _fill(ctx, deps, hot=1, suspended=1, stopped=1)
    user = _user(settings)

    hot = await _post(api, user)
    assert hot.status_code == 201, hot.text
    assert hot.json()["status"] == "active" and hot.json()["machineId"] == tiers[Tier.HOT][0]

    views = {}
    for tier in (Tier.SUSPENDED, Tier.STOPPED):
        answer = await _post(api, user)
        assert answer.status_code == 202, answer.text
        view = answer.json()
        [machine_id] = tiers[tier]
        assert view["status"] == "booting" and view["machineId"] == machine_id
        # The lease is committed like a hot one: the ledger row is there before the wake.
        ledger = _row(
            database_url,
            "SELECT machine_id, epoch, released_at FROM machine_leases WHERE session_id = %s",
            uuid.UUID(view["id"]),
        )
        record = await deps.inventory.machine(machine_id)
        assert record is not None and record.state is PoolState.LEASED
        assert ledger == [(machine_id, record.epoch, None)]
        assert fake.machines[machine_id].state == tier.value  # not woken yet
        queued = await _queued(deps)
        assert queued[f"wake:{view['id']}"] == (
            "wake_machine",
            (view["id"], machine_id, record.epoch),
        )
        views[tier] = (view, record.epoch)

    on_demand = await _post(api, user)
    assert on_demand.status_code == 202 and on_demand.json()["machineId"] is None
    assert f"boot:{on_demand.json()['id']}" in await _queued(deps)

    for tier, (view, epoch) in views.items():
        machine_id = view["machineId"]
        fake_machine = fake.machines[machine_id]
        resumes, boots = fake_machine.resumes, fake_machine.cold_boots
        assert await jobs.wake_machine(ctx, view["id"], machine_id, epoch) == Woken.ACTIVE.value
        assert fake_machine.state == "started"
        if tier is Tier.SUSPENDED:
            assert fake_machine.resumes == resumes + 1, "a suspended machine resumes"
        else:
            assert fake_machine.cold_boots == boots + 1, "a stopped machine boots"
        seen = (await api.get(f"{SESSIONS}/{view['id']}", headers=user.headers)).json()
        assert seen["status"] == "active" and seen["machineId"] == machine_id
        # A second delivery does nothing.
        assert await jobs.wake_machine(ctx, view["id"], machine_id, epoch) == Woken.SKIPPED.value
    assert await jobs.boot_session(ctx, on_demand.json()["id"]) == "attached"
    hits = await deps.inventory.tier_hits(POOL)
    assert hits == {Tier.HOT: 1, Tier.SUSPENDED: 1, Tier.STOPPED: 1}
    assert (await deps.inventory.hit_stats(POOL)) == (3, 1)
    events = _row(
        database_url,
        "SELECT kind FROM session_events WHERE session_id = %s ORDER BY id",
        uuid.UUID(views[Tier.STOPPED][0]["id"]),
    )
    assert [e[0] for e in events] == ["requested", "leased", "machine_ready"]


async def test_an_uncommitted_lease_from_a_lower_tier_goes_back_to_that_tier(
    deps: WorkerContext, ctx: dict[str, Any]
) -> None:
    tiers = await _fill(ctx, deps, hot=0, suspended=1, stopped=0)
    outcome = await deps.broker.lease(
        LeaseRequest(POOL.template, POOL.region, uuid.uuid4(), uuid.uuid4(), 3, 60, 10)
    )
    assert isinstance(outcome, Leased) and outcome.tier is Tier.SUSPENDED
    assert outcome.machine_id == tiers[Tier.SUSPENDED][0]

    assert await deps.broker.release(outcome.machine_id, outcome.epoch, return_to_ready=True)

    assert await _tiers(deps) == {
        Tier.HOT: [],
        Tier.SUSPENDED: tiers[Tier.SUSPENDED],
        Tier.STOPPED: [],
    }


async def test_a_machine_that_will_not_wake_fails_its_session_and_is_recycled(
    settings: Settings,
    deps: WorkerContext,
    ctx: dict[str, Any],
    fake: FakeFlyAPI,
    api: httpx.AsyncClient,
) -> None:
    tiers = await _fill(ctx, deps, hot=0, suspended=0, stopped=1)
    user = _user(settings)
    view = (await _post(api, user)).json()
    [machine_id] = tiers[Tier.STOPPED]
    fake.machines[machine_id].fail_next_boot = True
    record = await deps.inventory.machine(machine_id)
    assert record is not None

    assert await jobs.wake_machine(ctx, view["id"], machine_id, record.epoch) == Woken.FAILED.value

    seen = (await api.get(f"{SESSIONS}/{view['id']}", headers=user.headers)).json()
    assert seen["status"] == "failed"
    after = await deps.inventory.machine(machine_id)
    assert after is not None and after.state is PoolState.RECYCLING
    assert (await _queued(deps))[f"recycle:{machine_id}:{record.epoch + 1}"][0] == "recycle"
    # The session never started: its editor falls back to Appetize (docs/rollout.md, "Fallback").
    with psycopg.connect(settings.database_url or "") as conn:
        fallbacks = conn.execute(
            "SELECT reason, session_id FROM preview_fallbacks WHERE project_id = %s",
            (user.project_id,),
        ).fetchall()
    assert fallbacks == [("wake_failed", uuid.UUID(view["id"]))]


# -- recycle -------------------------------------------------------------------------------------


async def test_recycle_resets_and_returns_each_machine_to_the_tier_that_needs_it(
    settings: Settings,
    deps: WorkerContext,
    ctx: dict[str, Any],
    fake: FakeFlyAPI,
    api: httpx.AsyncClient,
) -> None:
    tiers = await _fill(ctx, deps, hot=1, suspended=1, stopped=0)
    user = _user(settings)
    hot = (await _post(api, user)).json()
    woken = (await _post(api, user)).json()
    epoch = (await deps.inventory.machine(woken["machineId"])).epoch  # type: ignore[union-attr]
    assert (
        await jobs.wake_machine(ctx, woken["id"], woken["machineId"], epoch) == Woken.ACTIVE.value
    )
    suspended_machine = fake.machines[tiers[Tier.SUSPENDED][0]]
    resumes = suspended_machine.resumes

    for view in (hot, woken):
        assert (
            await api.delete(f"{SESSIONS}/{view['id']}", headers=user.headers)
        ).status_code == 204
    queued = await _queued(deps)
    recycles = {args[0]: args[1] for name, args in queued.values() if name == "recycle"}
    assert set(recycles) == {hot["machineId"], woken["machineId"]}
    used_token = await deps.inventory.token_hash(hot["machineId"])

    # Both tiers are empty now: the first machine back fills hot, the second suspended.
    assert (
        await jobs.recycle(ctx, hot["machineId"], recycles[hot["machineId"]])
        == Recycled.READY.value
    )
    assert (
        await jobs.recycle(ctx, woken["machineId"], recycles[woken["machineId"]])
        == Recycled.SUSPENDED.value
    )

    assert await _tiers(deps) == {
        Tier.HOT: [hot["machineId"]],
        Tier.SUSPENDED: [woken["machineId"]],
        Tier.STOPPED: [],
    }
    assert suspended_machine.state == "suspended" and suspended_machine.snapshot
    assert suspended_machine.resumes == resumes, "the reset booted from the image, not the snapshot"
    # The last session's machine token no longer opens the sandbox socket.
    new_token = await deps.inventory.token_hash(hot["machineId"])
    assert new_token != used_token and new_token == _token_hash(fake, hot["machineId"])
    record = await deps.inventory.machine(woken["machineId"])
    assert record is not None and record.session_id is None and record.tier is Tier.SUSPENDED
    # A duplicate delivery does nothing; with every tier full a recycled machine goes.
    assert (
        await jobs.recycle(ctx, hot["machineId"], recycles[hot["machineId"]])
        == Recycled.SKIPPED.value
    )
    again = (await _post(api, user)).json()
    assert (await api.delete(f"{SESSIONS}/{again['id']}", headers=user.headers)).status_code == 204
    await _set_tiers(deps, (0, 0), (1, 1), (0, 0))
    record = await deps.inventory.machine(again["machineId"])
    assert record is not None and record.state is PoolState.RECYCLING
    assert await jobs.recycle(ctx, again["machineId"], record.epoch) == Recycled.DESTROYED.value
    assert fake.machines[again["machineId"]].state in ("destroying", "destroyed")


# -- rolling resize ------------------------------------------------------------------------------


async def test_a_guest_resize_rolls_through_ready_machines_and_never_touches_leased_ones(
    settings: Settings,
    deps: WorkerContext,
    ctx: dict[str, Any],
    fake: FakeFlyAPI,
    api: httpx.AsyncClient,
) -> None:
    tiers = await _fill(ctx, deps, hot=2, suspended=1, stopped=1)
    user = _user(settings)
    leased = (await _post(api, user)).json()
    leased_machine = fake.machines[leased["machineId"]]
    leased_version = leased_machine.version
    await _set_tiers(deps, (2, 2), (1, 1), (1, 1), guest=(2, 2048))

    before = len(fake.requests)
    report = await jobs.resize_guest(ctx, POOL.template, POOL.region)
    rolled = fake.requests[before:]

    assert report == {
        "pool": str(POOL),
        "resized": 4 - 1,
        "current": 0,
        "skipped": 0,
        "failed": 0,
        "supported": True,
    }
    updates = fake.calls("Machines_update")
    assert len(updates) == 3
    assert all(u.body["config"]["guest"]["memory_mb"] == 2048 for u in updates)
    assert all(u.body["current_version"] for u in updates)
    assert leased["machineId"] not in {u.path.rsplit("/", 1)[-1] for u in updates}
    assert leased_machine.version == leased_version and leased_machine.state == "started"
    # One machine at a time: every call about one machine comes before the next one's update.
    moved = [u.path.rsplit("/", 1)[-1] for u in updates]
    for previous, following in itertools.pairwise(moved):
        next_update = next(
            i
            for i, r in enumerate(rolled)
            if r.operation == "Machines_update" and following in r.path
        )
        last_call = max(i for i, r in enumerate(rolled) if previous in r.path)
        assert last_call < next_update
    back = await _tiers(deps)
    for tier in Tier:
        expected = [m for m in tiers[tier] if m != leased["machineId"]]
        assert back[tier] == sorted(expected)
        for machine_id in expected:
            state = fake.machines[machine_id].state
            assert state == {"hot": "started", "suspended": "suspended", "stopped": "stopped"}[tier]
            assert fake.machines[machine_id].config["guest"]["cpus"] == 2
    assert len(set(moved)) == 3
    # Done once: running it again changes nothing.
    again = await jobs.resize_guest(ctx, POOL.template, POOL.region)
    assert (again["resized"], again["current"]) == (0, 3)

    # The leased machine gets the new size on recycle; new machines are created with it.
    assert (await api.delete(f"{SESSIONS}/{leased['id']}", headers=user.headers)).status_code == 204
    record = await deps.inventory.machine(leased["machineId"])
    assert record is not None
    assert await jobs.recycle(ctx, leased["machineId"], record.epoch) == Recycled.READY.value
    assert leased_machine.config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}
    await _set_tiers(deps, (3, 3), (1, 1), (1, 1))
    await _settle(ctx)
    assert fake.calls("Machines_create")[-1].body["config"]["guest"]["memory_mb"] == 2048


# -- reconcile -----------------------------------------------------------------------------------


async def test_reconcile_against_flys_list_destroys_orphans_and_drops_dead_records(
    deps: WorkerContext, ctx: dict[str, Any], fake: FakeFlyAPI
) -> None:
    tiers = await _fill(ctx, deps, hot=1, suspended=1, stopped=1)
    orphan = await deps.provider.create(MachineSpec(POOL.template, POOL.region))
    [dead] = tiers[Tier.STOPPED]
    await deps.provider.destroy(dead)  # gone behind the pool's back
    stuck = tiers[Tier.HOT][0]
    assert await deps.inventory.take_machine(stuck, Tier.STOPPED) is not None  # a move that died

    report = await reconcile(
        deps.services,
        orphan_grace_seconds=0,
        stuck_seconds=120.0,
        now=time.time() + 600,
    )

    assert report.orphans_destroyed == 1
    assert report.records_dropped == 2  # the destroyed machine and the stuck move
    assert fake.machines[orphan.id].state in ("destroying", "destroyed")
    assert fake.machines[stuck].state in ("destroying", "destroyed")
    assert await deps.inventory.machine(dead) is None
    assert await deps.inventory.machine(stuck) is None
    # The suspended machine is alive, though not running: it stays.
    assert await _tiers(deps) == {
        Tier.HOT: [],
        Tier.SUSPENDED: tiers[Tier.SUSPENDED],
        Tier.STOPPED: [],
    }
    again = await reconcile(deps.services, orphan_grace_seconds=0)
    assert (again.orphans_destroyed, again.records_dropped) == (0, 0)


# -- bursts and capacity ---------------------------------------------------------------------------


async def test_a_burst_of_100_leases_stays_within_flys_rate_limits(
    settings: Settings,
    deps: WorkerContext,
    ctx: dict[str, Any],
    fake: FakeFlyAPI,
    api: httpx.AsyncClient,
) -> None:
    fake.check_answers = False  # every other test checks them; this one is about pacing
    await _fill(ctx, deps, hot=10, suspended=10, stopped=20)
    await _set_tiers(deps, (10, 10), (10, 10), (20, 20))
    user = _user(settings)

    answers = await asyncio.gather(*(_post(api, user) for _ in range(100)))

    codes = [a.status_code for a in answers]
    assert codes.count(201) == 10 and codes.count(202) == 90, codes
    queued = await _queued(deps)
    wakes = [args for name, args in queued.values() if name == "wake_machine"]
    boots = [args for name, args in queued.values() if name == "boot_session"]
    assert (len(wakes), len(boots)) == (30, 60)
    # Every worker job of the burst at once, with the refill running alongside.
    outcomes = await asyncio.gather(
        *(jobs.wake_machine(ctx, *args) for args in wakes),
        *(jobs.boot_session(ctx, *args) for args in boots),
        jobs.resize(ctx, POOL.template, POOL.region),
    )
    assert outcomes[:30] == [Woken.ACTIVE.value] * 30
    assert outcomes[30:90] == [Booted.ATTACHED.value] * 60
    statuses = _row(
        settings.database_url or "",
        "SELECT status, count(*) FROM preview_sessions GROUP BY status",
    )
    assert statuses == [("active", 100)]
    assert fake.rate_limit_violations == []
    creates = fake.calls("Machines_create")
    assert len(creates) >= 40 + 60
    # Creates are per app: 1/s after a burst of 3, so the limiter spread them out.
    burst = [c.at for c in creates[40:]]
    assert burst[-1] - burst[0] >= len(burst) - 3 - 1


async def test_capacity_errors_fall_back_to_another_region(
    settings: Settings,
    deps: WorkerContext,
    ctx: dict[str, Any],
    fake: FakeFlyAPI,
    api: httpx.AsyncClient,
) -> None:
    fake.exhaust_region("ams")
    await _set_tiers(deps, (1, 1), (1, 1), (0, 0))

    await _settle(ctx)

    tiers = await _tiers(deps)
    assert [len(tiers[t]) for t in Tier] == [1, 1, 0]
    for machine_id in tiers[Tier.HOT] + tiers[Tier.SUSPENDED]:
        assert fake.machines[machine_id].region == "fra"
    regions = [c.body["region"] for c in fake.calls("Machines_create")]
    assert regions.count("ams") == regions.count("fra") == 2
    answer = await _post(api, _user(settings))
    assert answer.status_code == 201 and answer.json()["machineId"] == tiers[Tier.HOT][0]

    # No region has room: the creates fail and leave nothing behind; the hot tier still
    # resumes the suspended machine meanwhile.
    fake.exhaust_region("fra")
    await _set_tiers(deps, (3, 3), (1, 1), (0, 0))
    plan = (await jobs.resize(ctx, POOL.template, POOL.region))[str(POOL)]
    assert plan["create"] == 3
    assert plan["moves"] == [{"from": "suspended", "to": "hot", "count": 1}]
    counts = await deps.inventory.counts(POOL)
    assert (counts.ready, counts.suspended, counts.booting, counts.leased) == (1, 0, 0, 1)
    assert len(fake.live()) == 2


# -- operators -------------------------------------------------------------------------------------


async def test_admin_sets_tier_bounds_and_a_guest_size_and_omitted_fields_keep_theirs(
    settings: Settings, deps: WorkerContext, api: httpx.AsyncClient
) -> None:
    admin = make_user(settings.database_url or "", admin=True)
    url = f"/api/admin/pool/{POOL.template}/{POOL.region}"
    body = {
        "min": 1,
        "max": 5,
        "suspended": {"min": 0, "max": 4},
        "stopped": {"min": 10, "max": 30},
        "guest": {"cpus": 2, "memoryMb": 2048},
    }

    put = await api.put(url, json=body, headers=admin.headers)

    assert put.status_code == 200, put.text
    assert put.json() == {"template": POOL.template, "region": POOL.region, **body}
    queued = await _queued(deps)
    assert queued[f"resize:{POOL.template}:{POOL.region}"][0] == "resize"
    assert queued[f"resize-guest:{POOL.template}:{POOL.region}"] == (
        "resize_guest",
        (POOL.template, POOL.region),
    )
    # min/max only (an older client): the tiers and the guest stay as they were.
    again = await api.put(url, json={"min": 2, "max": 6}, headers=admin.headers)
    assert again.json() == {
        **body,
        "template": POOL.template,
        "region": POOL.region,
        "min": 2,
        "max": 6,
    }
    rows = _row(
        settings.database_url or "",
        "SELECT min_size, max_size, suspended_min, suspended_max, stopped_min, stopped_max, "
        "guest_cpus, guest_memory_mb FROM pool_targets",
    )
    assert rows == [(2, 6, 0, 4, 10, 30, 2, 2048)]
    report = (await api.get("/api/admin/pool", headers=admin.headers)).json()["pools"]
    [row] = [r for r in report if r["region"] == POOL.region]
    assert row["tiers"]["stopped"] == {"min": 10, "max": 30, "ready": 0, "hits": 0}
    assert row["tiers"]["suspended"]["max"] == 4

    for bad in (
        {"min": 1, "max": 3, "stopped": {"min": 5, "max": 2}},
        {"min": 1, "max": 3, "suspended": {"min": 1}},
        {"min": 1, "max": 3, "suspended": {"min": 0, "max": 1, "headroom": 2}},
        {"min": 1, "max": 3, "guest": {"cpus": 0, "memoryMb": 1024}},
        {"min": 1, "max": 3, "stopped": {"min": 0, "max": 1001}},
    ):
        refused = await api.put(url, json=bad, headers=admin.headers)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_body", bad
    assert _row(settings.database_url or "", "SELECT min_size, stopped_max FROM pool_targets") == [
        (2, 30)
    ]


def _token_hash(fake: FakeFlyAPI, machine_id: str) -> str:
    token = fake.machines[machine_id].config["env"]["PREVIEW_MACHINE_TOKEN"]
    return hashlib.sha256(token.encode()).hexdigest()
