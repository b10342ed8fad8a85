"""Reconcile heals what crashes and store loss leave behind, and no record is ever written
without its token hash. Real Redis, real Postgres, the real LocalProvider (placeholder
machines); a test subscribes to a machine's channel where the gateway would for its agent."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.settings import Settings
from pool.core.errors import UnknownMachine
from pool.core.provider import Machine, MachineState
from pool.core.states import PoolState
from pool.edits.edit_log import Change, EditLog, Ended
from pool.providers.local import LocalProvider
from pool.services.reconciler import ReconcileReport, reconcile
from pool.services.refill import RefillSettings, boot_into_pool, create_and_wait
from pool.store.leasing import Heartbeat, Leased, LeaseRequest
from pool.store.redis_errors import resolved
from sql.sessions import end_session, record_session
from sql.states import SessionStatus
from tests.conftest import REDIS_URL, make_user, new_session
from tests.integration.helpers import POOL, destroy_all_machines
from tests.redis_claim import flush as flush_redis
from workers.config import WorkerConfig
from workers.context import WorkerContext

STUCK = 180.0


@pytest.fixture
async def deps(settings: Settings, tmp_path: Path, arq: ArqRedis) -> AsyncIterator[WorkerContext]:
    base_dir = tmp_path / "provider"
    config = WorkerConfig(
        database_url=settings.database_url or "",
        redis_url=REDIS_URL,
        provider_factory=lambda _redis: LocalProvider(base_dir),
        default_pools=[POOL],
        default_bounds=(1, 2),
        refill=RefillSettings(refill_seconds=5.0, headroom=0.0, boot_timeout=20.0),
        pending_ttl_ms=10_000,
        ondemand_max=2,
    )
    context = await WorkerContext.open(config, arq)
    try:
        yield context
    finally:
        try:
            await destroy_all_machines(base_dir)
        finally:
            await context.close()


async def _confirmed(
    pubsub: PubSub, change: Callable[[str], Awaitable[object]], channel: str
) -> None:
    """(Un)subscribe and wait until Redis confirms it: redis-py only sends the command, and a
    script run on another connection right after could still see the channel as it was."""
    await change(channel)
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(timeout=0.5)
        if message is not None and message["type"] in ("subscribe", "unsubscribe"):
            return
    raise AssertionError(f"Redis did not confirm the change of {channel}")


async def _reconcile(deps: WorkerContext, **kwargs: float) -> ReconcileReport:
    return await reconcile(
        deps.services,
        stuck_seconds=STUCK,
        **kwargs,
    )


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _boot(deps: WorkerContext) -> str:
    return await boot_into_pool(deps.inventory, deps.provider, POOL, deps.config.refill)


async def _lease(deps: WorkerContext, *, commit: bool = True) -> tuple[Leased, uuid.UUID]:
    user = make_user(deps.config.database_url)
    session_id = uuid.uuid4()
    leased = await deps.broker.lease(
        LeaseRequest(POOL.template, POOL.region, user.id, session_id, 3, 60, 10)
    )
    assert isinstance(leased, Leased), leased
    if commit:
        async with deps.db.connection() as conn:
            await record_session(
                conn,
                new_session(session_id, user.id, user.project_id),
                max_concurrent=3,
                machine_id=leased.machine_id,
                epoch=leased.epoch,
            )
        assert await deps.broker.promote(leased.machine_id, leased.epoch, session_id)
    return leased, session_id


async def test_no_script_writes_a_record_without_its_token_hash(deps: WorkerContext) -> None:
    inventory = deps.inventory
    with pytest.raises(ValueError, match="no token"):
        await inventory.mark_booting("m-1", POOL, "")
    assert await inventory.make_ready("m-1", POOL, "http://x") is None  # no record: not made
    assert await inventory.claim_leased("m-1", POOL, "http://x", "s", "u") is None
    assert await inventory.set_token("m-1", "a-token") is False
    assert await deps.redis.exists("po:m:m-1") == 0

    await inventory.mark_booting("m-2", POOL, "its-token")
    assert await inventory.make_ready("m-2", POOL, "http://x") is not None
    record = await inventory.machine("m-2")
    assert record is not None and record.token_hash == _sha256("its-token")


class ForgettingProvider(LocalProvider):
    """The local provider, while Redis loses each new machine's record as it boots."""

    def __init__(self, base_dir: Path, redis: Redis) -> None:
        super().__init__(base_dir)
        self._redis = redis

    async def wait(self, machine_id: str, state: MachineState, timeout: float) -> Machine:
        machine = await super().wait(machine_id, state, timeout)
        await self._redis.delete(f"po:m:{machine_id}")
        return machine


async def test_a_machine_whose_record_vanished_while_it_booted_is_destroyed(
    deps: WorkerContext, tmp_path: Path
) -> None:
    provider = ForgettingProvider(tmp_path / "provider", deps.redis)
    try:
        with pytest.raises(UnknownMachine):
            await boot_into_pool(deps.inventory, provider, POOL, deps.config.refill)
        assert await provider.list() == []
    finally:
        await provider.aclose()
    assert await deps.redis.keys("po:m:*") == []


async def test_a_tokenless_record_gets_its_hash_back_from_the_provider(
    deps: WorkerContext,
) -> None:
    machine_id = await _boot(deps)
    # A record written by an older version, which stored no token hash.
    await resolved(deps.redis.hdel(f"po:m:{machine_id}", "token_sha256"))

    report = await _reconcile(deps)

    assert report.tokens_restored == 1 and report.records_dropped == 0
    token = (await deps.provider.get(machine_id)).metadata["token"]
    assert await deps.inventory.token_hash(machine_id) == _sha256(token)
    assert (await _reconcile(deps)).tokens_restored == 0


async def test_the_record_of_a_leased_machine_lost_with_redis_is_rebuilt(
    deps: WorkerContext,
) -> None:
    await _boot(deps)
    leased, session_id = await _lease(deps)
    flush_redis(REDIS_URL)  # Redis restarted empty (this run's own database)

    report = await _reconcile(deps, orphan_grace_seconds=3600)

    assert (report.records_restored, report.sessions_failed) == (1, 0)
    record = await deps.inventory.machine(leased.machine_id)
    assert record is not None
    assert (record.state, record.epoch, record.session_id) == (
        PoolState.LEASED,
        leased.epoch,
        str(session_id),
    )
    token = (await deps.provider.get(leased.machine_id)).metadata["token"]
    assert record.token_hash == _sha256(token)
    assert str(session_id) in await resolved(deps.redis.smembers(f"po:user:{record.user_id}"))
    # The lease goes on: its holder's heartbeat is recorded, and the session ends normally.
    assert await deps.broker.heartbeat(leased.machine_id, leased.epoch) is Heartbeat.RECORDED
    assert (await _reconcile(deps, orphan_grace_seconds=3600)).records_restored == 0


async def test_two_reconciles_at_once_after_a_store_loss_rebuild_and_keep_the_leased_machine(
    deps: WorkerContext,
) -> None:
    # The scheduled run and the one a store reset starts at once: the second must not destroy,
    # as an orphan, the machine whose record the first just rebuilt (the machine was gone and
    # its live session failed when both read the empty store before either rebuilt it).
    await _boot(deps)
    leased, session_id = await _lease(deps)
    flush_redis(REDIS_URL)

    first, second = await asyncio.gather(
        _reconcile(deps, orphan_grace_seconds=0), _reconcile(deps, orphan_grace_seconds=0)
    )

    assert first.records_restored + second.records_restored == 1
    assert first.sessions_failed + second.sessions_failed == 0
    assert first.orphans_destroyed + second.orphans_destroyed == 0
    record = await deps.inventory.machine(leased.machine_id)
    assert record is not None and record.session_id == str(session_id)
    assert leased.machine_id in {m.id for m in await deps.provider.list()}


async def test_machines_stranded_in_a_transient_state_are_replaced_after_the_bound(
    deps: WorkerContext,
) -> None:
    recycling = await _boot(deps)
    leased, _ = await _lease(deps, commit=False)
    assert leased.machine_id == recycling
    assert await deps.broker.release(recycling, leased.epoch)  # -> recycling; its job never ran
    await create_and_wait(deps.inventory, deps.provider, POOL, deps.config.refill)  # then died
    record = await deps.inventory.machine(recycling)
    assert record is not None and record.taken_at is not None

    within = await _reconcile(deps, now=record.taken_at + STUCK - 5)
    assert within.records_dropped == 0

    past = await _reconcile(deps, now=record.taken_at + STUCK + 5)

    assert past.records_dropped == 2  # the recycling machine and the booting one
    assert await deps.inventory.machines(POOL) == []
    assert await deps.provider.list() == []


async def test_a_ready_machine_whose_agent_stays_away_is_replaced(deps: WorkerContext) -> None:
    pubsub = deps.redis.pubsub()
    first = await create_and_wait(deps.inventory, deps.provider, POOL, deps.config.refill)
    await _confirmed(
        pubsub, pubsub.subscribe, f"po:ch:machine:{first.id}"
    )  # its agent's socket, as the gateway
    await deps.inventory.make_ready(first.id, POOL, first.address)
    second = await _boot(deps)  # no agent ever connected: never checked
    record = await deps.inventory.machine(first.id)
    assert record is not None and record.agent_at is not None

    await _confirmed(pubsub, pubsub.unsubscribe, f"po:ch:machine:{first.id}")  # the agent died
    leased, _ = await _lease(deps, commit=False)
    assert leased.machine_id == second  # the older machine was skipped
    skipped = await deps.inventory.machine(first.id)
    assert skipped is not None and skipped.state is PoolState.READY
    assert skipped.agent_lost_at is not None
    assert await resolved(deps.redis.lrange(f"po:ready:{POOL}", 0, -1)) == [first.id]

    report = await _reconcile(deps, agent_lost_seconds=60, now=skipped.agent_lost_at + 30)
    assert report.records_dropped == 0  # not yet: an agent may be reconnecting
    report = await _reconcile(deps, agent_lost_seconds=60, now=skipped.agent_lost_at + 61)

    assert report.records_dropped == 1
    assert await deps.inventory.machine(first.id) is None
    assert first.id not in {m.id for m in await deps.provider.list()}
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5


async def test_an_agent_that_comes_back_is_leased_again(deps: WorkerContext) -> None:
    pubsub = deps.redis.pubsub()
    machine = await create_and_wait(deps.inventory, deps.provider, POOL, deps.config.refill)
    channel = f"po:ch:machine:{machine.id}"
    await _confirmed(pubsub, pubsub.subscribe, channel)
    await deps.inventory.make_ready(machine.id, POOL, machine.address)
    await _confirmed(pubsub, pubsub.unsubscribe, channel)
    request = LeaseRequest(POOL.template, POOL.region, uuid.uuid4(), uuid.uuid4(), 3, 60, 10)
    assert not isinstance(await deps.broker.lease(request), Leased)  # its agent is away

    await _confirmed(pubsub, pubsub.subscribe, channel)  # reconnected
    assert (await _reconcile(deps)).records_dropped == 0
    record = await deps.inventory.machine(machine.id)
    assert record is not None and record.agent_lost_at is None
    leased, _ = await _lease(deps, commit=False)
    assert leased.machine_id == machine.id
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5


async def test_a_ready_hot_machine_that_stopped_is_replaced(deps: WorkerContext) -> None:
    machine_id = await _boot(deps)
    await deps.provider.stop(machine_id)

    report = await _reconcile(deps)

    assert report.records_dropped == 1
    assert await deps.inventory.machine(machine_id) is None
    assert await deps.provider.list() == []


async def test_a_lease_whose_end_never_reached_redis_is_announced_and_released(
    deps: WorkerContext,
) -> None:
    # The session's end committed in Postgres, then Redis was down: no `ended` mark, no release.
    await _boot(deps)
    leased, session_id = await _lease(deps)
    async with deps.db.connection() as conn:
        ended = await end_session(conn, session_id, reason="deleted", status=SessionStatus.ENDED)
    assert ended is not None
    assert (await deps.inventory.machine(leased.machine_id)).state is PoolState.LEASED  # type: ignore[union-attr]

    report = await _reconcile(deps, orphan_grace_seconds=3600)

    assert report.ended_leases_released == 1
    record = await deps.inventory.machine(leased.machine_id)
    assert record is not None and record.state is PoolState.RECYCLING
    assert await EditLog(deps.redis).ended(str(session_id)) == ("deleted", "ended")
    queued = [(j.function, j.args) for j in await deps.arq.queued_jobs()]
    assert ("recycle", (leased.machine_id, leased.epoch + 1)) in queued
    assert (await _reconcile(deps, orphan_grace_seconds=3600)).ended_leases_released == 0


async def test_a_leased_machine_whose_agent_stays_away_fails_its_session(
    deps: WorkerContext,
) -> None:
    pubsub = deps.redis.pubsub()
    machine = await create_and_wait(deps.inventory, deps.provider, POOL, deps.config.refill)
    channel = f"po:ch:machine:{machine.id}"
    await _confirmed(pubsub, pubsub.subscribe, channel)  # its agent's socket, as the gateway
    await deps.inventory.make_ready(machine.id, POOL, machine.address)
    leased, session_id = await _lease(deps)
    assert leased.machine_id == machine.id
    assert (await _reconcile(deps)).records_dropped == 0  # its agent is there

    await _confirmed(
        pubsub, pubsub.unsubscribe, channel
    )  # the agent died (or its machine lost its network)
    first = await _reconcile(deps, agent_lost_seconds=60)
    assert (first.records_dropped, first.sessions_failed) == (0, 0)  # it may be reconnecting
    record = await deps.inventory.machine(machine.id)
    assert record is not None and record.agent_lost_at is not None
    report = await _reconcile(deps, agent_lost_seconds=60, now=record.agent_lost_at + 61)

    assert (report.records_dropped, report.sessions_failed) == (1, 1)
    assert machine.id not in {m.id for m in await deps.provider.list()}
    # The editors are told why, and no patch of the session is acked from now on.
    assert await EditLog(deps.redis).ended(str(session_id)) == ("machine_lost", "failed")
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5


async def test_an_end_whose_announce_failed_is_announced(deps: WorkerContext) -> None:
    # The end committed and the machine was released, but the `ended` mark never reached the
    # session's edit log (Redis refused that one call): its editors would go on being acked.
    await _boot(deps)
    leased, session_id = await _lease(deps)
    edits = EditLog(deps.redis)
    await edits.append(str(session_id), 1, [Change("a.js", "1")])
    async with deps.db.connection() as conn:
        await end_session(conn, session_id, reason="idle_timeout", status=SessionStatus.ENDED)
    assert await deps.broker.release(leased.machine_id, leased.epoch)
    assert await edits.ended(str(session_id)) is None

    report = await _reconcile(deps, orphan_grace_seconds=3600)

    assert report.ended_leases_released == 1
    assert await edits.ended(str(session_id)) == ("idle_timeout", "ended")
    assert (await edits.append(str(session_id), 2, [Change("a.js", "2")])) == Ended("idle_timeout")
    assert (await _reconcile(deps, orphan_grace_seconds=3600)).ended_leases_released == 0
