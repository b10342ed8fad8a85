"""The Lua scripts make exactly the machine state changes of pool.core.states.TRANSITIONS.

Every script that changes a machine's state runs, through the Python API that sends it, from a
record in every PoolState (at its current epoch, its own session, its id in the hot ready list,
a boot slot held: everything a script could ask for). A script either moves the record along an
edge it declares here, and the table must allow that edge, or leaves the record byte-for-byte as
it was. The edges the scripts make together must be the whole table: an edge no script makes is
a table that lies. Real Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from pool.core.states import TRANSITIONS, PoolState, Tier
from pool.store.inventory import Inventory, PoolKey
from pool.store.keys import Keys
from pool.store.leasing import LeaseBroker, LeaseRequest

EPOCH = 5
S = PoolState


@dataclass(frozen=True)
class Machine:
    """A machine record written straight into Redis, in `state`."""

    id: str
    pool: PoolKey
    state: PoolState
    session: uuid.UUID = field(default_factory=uuid.uuid4)
    user: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class Stores:
    redis: Redis
    broker: LeaseBroker
    inventory: Inventory


Call = Callable[[Stores, Machine], Awaitable[Any]]


@dataclass(frozen=True)
class Script:
    name: str
    call: Call
    moves: dict[PoolState, PoolState]  # source -> the state the script leaves it in


def _lease(stores: Stores, m: Machine) -> Awaitable[Any]:
    request = LeaseRequest(m.pool.template, m.pool.region, uuid.uuid4(), uuid.uuid4(), 10, 600, 100)
    return stores.broker.lease(request)


SCRIPTS = [
    Script("lease", _lease, {S.READY: S.PENDING}),
    Script(
        "promote",
        lambda st, m: st.broker.promote(m.id, EPOCH, m.session),
        {S.PENDING: S.LEASED},
    ),
    Script(
        "release",
        lambda st, m: st.broker.release(m.id, EPOCH),
        {S.PENDING: S.RECYCLING, S.LEASED: S.RECYCLING},
    ),
    Script(
        "release, back to ready",
        lambda st, m: st.broker.release(m.id, EPOCH, return_to_ready=True),
        {S.PENDING: S.READY, S.LEASED: S.RECYCLING},  # a leased machine is never reused unreset
    ),
    Script(
        "make_ready, a new machine",
        lambda st, m: st.inventory.make_ready(m.id, m.pool, "http://new"),
        {S.BOOTING: S.READY},
    ),
    Script(
        "make_ready, from the state it is in",
        lambda st, m: st.inventory.make_ready(
            m.id, m.pool, "http://new", from_state=m.state, from_epoch=EPOCH
        ),
        {S.BOOTING: S.READY, S.RECYCLING: S.READY, S.MOVING: S.READY},
    ),
    Script("drain", lambda st, m: st.inventory.drain(m.pool, 1), {S.READY: S.DRAINING}),
    Script(
        "drain, to move",
        lambda st, m: st.inventory.take_for_move(m.pool, Tier.HOT, Tier.STOPPED, 1),
        {S.READY: S.MOVING},
    ),
    Script(
        "take_machine",
        lambda st, m: st.inventory.take_machine(m.id, Tier.SUSPENDED),
        {S.READY: S.MOVING},
    ),
    Script(
        "claim_leased",
        lambda st, m: st.inventory.claim_leased(
            m.id, m.pool, "http://new", str(m.session), str(m.user)
        ),
        {S.BOOTING: S.LEASED},
    ),
    Script(
        "restore_machine",  # rebuilds a lost record; one that exists is never overwritten
        lambda st, m: st.inventory.restore_leased(
            m.id, m.pool, "http://new", session_id="s", user_id="u", epoch=1, token="t"
        ),
        {},
    ),
]

# Scripts that write a record but are no transition: the state and epoch stay.
NO_TRANSITION: list[tuple[str, Call]] = [
    ("heartbeat", lambda st, m: st.broker.heartbeat(m.id, EPOCH)),
    ("stamp", lambda st, m: st.inventory.stamp(m.id, m.state, "taken_at", epoch=EPOCH)),
    ("set_token", lambda st, m: st.inventory.set_token(m.id, "a-new-token")),
]


async def _write(redis: Redis, keys: Keys, m: Machine) -> None:
    """The record as the scripts leave it in `m.state`, its id in the hot list (a stale entry
    unless it is ready: lease and drain must skip it) and a boot slot for its session."""
    pool = str(m.pool)
    record: dict[str, str | int] = {
        "state": m.state.value,
        "epoch": EPOCH,
        "template": m.pool.template,
        "region": m.pool.region,
        "address": "http://old",
        "tier": Tier.HOT.value,
        "token_sha256": "0" * 64,
        "booting_at": 1,
    }
    if m.state in (S.PENDING, S.LEASED):
        record |= {"session": str(m.session), "user": str(m.user), "leased_at": 2}
        await redis.sadd(keys.user_sessions(str(m.user)), str(m.session))  # type: ignore[misc]
    if m.state is S.PENDING:
        record["pending_until"] = 3
        await redis.zadd(keys.pending, {m.id: 3})
    if m.state in (S.RECYCLING, S.MOVING, S.DRAINING):
        record["taken_at"] = 4
    await redis.hset(keys.machine(m.id), mapping=record)  # type: ignore[misc]
    await redis.lpush(keys.ready(pool), m.id)  # type: ignore[misc]
    await redis.sadd(keys.machines(pool), m.id)  # type: ignore[misc]
    await redis.zadd(keys.booting_sessions(pool), {str(m.session): 1})


async def test_every_script_from_every_state_follows_the_table(redis_client: Redis) -> None:
    keys = Keys()
    stores = Stores(
        redis_client,
        LeaseBroker(redis_client, pending_ttl_ms=10_000, ondemand_max=0),
        Inventory(redis_client),
    )
    made: set[tuple[PoolState, PoolState]] = set()
    wrong: list[str] = []
    cases: list[tuple[str, Call, dict[PoolState, PoolState] | None]]
    cases = [(s.name, s.call, s.moves) for s in SCRIPTS]
    cases += [(name, call, None) for name, call in NO_TRANSITION]
    for n, (name, call, moves) in enumerate(cases):
        for state in PoolState:
            m = Machine(f"m-{n}-{state.value}", PoolKey("web", f"r-{n}-{state.value}"), state)
            await _write(redis_client, keys, m)
            before = await redis_client.hgetall(keys.machine(m.id))  # type: ignore[misc]
            await call(stores, m)
            after = await redis_client.hgetall(keys.machine(m.id))  # type: ignore[misc]
            case = f"{name} from {state.value}"
            if moves is None:
                if (after["state"], after["epoch"]) != (before["state"], before["epoch"]):
                    wrong.append(f"{case}: no transition, but became {after['state']}")
            elif state in moves:
                target = moves[state]
                if not state.can_become(target):
                    wrong.append(f"{case}: declares {target.value}, which the table forbids")
                if after.get("state") != target.value:
                    wrong.append(f"{case}: expected {target.value}, got {after.get('state')}")
                made.add((state, target))
            elif after != before:
                wrong.append(f"{case}: not a transition of the script, yet the record changed")
    assert wrong == []
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert made == table
