"""The pool's inventory in Redis: which machines exist per (template, region) and in what state.

Leasing lives in pool.store.leasing; this module covers everything around it: registering machines
as
they boot and become ready (in a tier), taking ready machines out to destroy them or to move
them between tiers, forgetting dead machines, and the counts and demand figures the sizing
policy and operators read.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import LockError, ResponseError

from pool.core.create_backoff import CreateBackoff
from pool.core.policy import TierCounts
from pool.core.states import PoolState, Tier
from pool.store.keys import DEFAULT_PREFIX, Keys, pool_name
from pool.store.redis_errors import resolved, translated_redis_errors
from pool.store.scripts import Scripts

DEMAND_BUCKET_SECONDS = 10


@dataclass(frozen=True, order=True)
class PoolKey:
    template: str
    region: str

    def __str__(self) -> str:
        return pool_name(self.template, self.region)

    @classmethod
    def parse(cls, text: str) -> PoolKey:
        template, _, region = text.partition(":")
        return cls(template, region)


@dataclass(frozen=True)
class MachineRecord:
    id: str
    state: PoolState
    epoch: int
    template: str
    region: str
    address: str
    session_id: str | None
    user_id: str | None
    booting_at: float | None
    # The tier a ready (or pending) machine is in, or a moving one is bound for.
    tier: Tier = Tier.HOT
    # When a machine left service to be moved, drained or recycled, or a job last claimed it
    # (Unix seconds, Redis' clock).
    taken_at: float | None = None
    # The SHA-256 of the machine's token: its agent's socket is refused without it.
    token_hash: str | None = None
    # When a hot machine became ready with its agent connected (lease.lua checks that agent is
    # still there), and when it was first seen gone.
    agent_at: float | None = None
    agent_lost_at: float | None = None


@dataclass(frozen=True)
class PoolCounts:
    """Machines per pool state. `ready` counts the hot tier (what a lease serves at once);
    `suspended` and `stopped` the ready machines of the lower tiers."""

    ready: int = 0
    booting: int = 0
    pending: int = 0
    leased: int = 0
    recycling: int = 0
    draining: int = 0
    moving: int = 0
    suspended: int = 0
    stopped: int = 0

    @property
    def total(self) -> int:
        return (
            self.ready
            + self.suspended
            + self.stopped
            + self.booting
            + self.pending
            + self.leased
            + self.recycling
            + self.draining
            + self.moving
        )


@dataclass(frozen=True)
class TierSupply:
    """What the tier policy sees of a pool: ready machines per tier, and machines on their way
    into a tier (booting ones become hot; moving ones land in their destination)."""

    ready: TierCounts
    arriving: TierCounts


def tier_supply(records: list[MachineRecord]) -> TierSupply:
    ready: Counter[Tier] = Counter()
    arriving: Counter[Tier] = Counter()
    for record in records:
        if record.state is PoolState.READY:
            ready[record.tier] += 1
        elif record.state is PoolState.BOOTING:
            arriving[Tier.HOT] += 1
        elif record.state is PoolState.MOVING:
            arriving[record.tier] += 1
    return TierSupply(TierCounts.of(ready), TierCounts.of(arriving))


class Inventory:
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._scripts = Scripts(redis)
        self.keys = Keys(prefix)

    async def mark_booting(self, machine_id: str, pool: PoolKey, token: str) -> None:
        """Record a machine the moment the provider names it, so reconcile never mistakes it
        for an orphan and the sizing policy counts it as supply. The token's hash is written in
        the same transaction: no record ever exists without it."""
        if not token:
            raise ValueError(f"machine {machine_id} has no token: its agent could never connect")
        async with translated_redis_errors(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.machine(machine_id),
                mapping={
                    "state": PoolState.BOOTING.value,
                    "template": pool.template,
                    "region": pool.region,
                    "booting_at": time.time(),
                    "token_sha256": token_hash(token),
                },
            )
            pipe.sadd(self.keys.machines(str(pool)), machine_id)
            pipe.sadd(self.keys.pools, str(pool))
            await pipe.execute()

    async def make_ready(
        self,
        machine_id: str,
        pool: PoolKey,
        address: str,
        *,
        from_state: PoolState | None = None,
        from_epoch: int | None = None,
        tier: Tier = Tier.HOT,
    ) -> int | None:
        """Put a machine in the ready list of `tier`. A new machine's record must still be
        booting; a recycled or moved one must still be in `from_state` at `from_epoch`. Returns
        the new epoch, or None when the machine moved on meanwhile (a duplicate delivery of the
        same job) or its record is gone (never recreated here: it would lack the token hash)."""
        async with translated_redis_errors():
            epoch = int(
                await self._scripts.run(
                    "make_ready",
                    [
                        self.keys.machine(machine_id),
                        self.keys.machines(str(pool)),
                        self.keys.pools,
                        self.keys.ready(str(pool), tier),
                    ],
                    machine_id,
                    pool.template,
                    pool.region,
                    address,
                    from_state.value if from_state else "",
                    "" if from_epoch is None else from_epoch,
                    tier.value,
                    self.keys.machine_channel(machine_id),
                )
            )
        return None if epoch < 0 else epoch

    async def claim_leased(
        self, machine_id: str, pool: PoolKey, address: str, session_id: str, user_id: str
    ) -> int | None:
        async with translated_redis_errors():
            epoch = int(
                await self._scripts.run(
                    "claim_leased",
                    [
                        self.keys.machine(machine_id),
                        self.keys.booting_sessions(str(pool)),
                        self.keys.machines(str(pool)),
                        self.keys.pools,
                    ],
                    machine_id,
                    pool.template,
                    pool.region,
                    address,
                    session_id,
                    user_id,
                    self.keys.machine_channel(machine_id),
                )
            )
        return None if epoch < 0 else epoch

    async def drain(self, pool: PoolKey, count: int, tier: Tier = Tier.HOT) -> list[str]:
        """Take up to `count` ready machines of `tier` out of the pool, to destroy them."""
        return [m for m, _ in await self._take(pool, tier, count, PoolState.DRAINING, None)]

    async def take_for_move(
        self, pool: PoolKey, source: Tier, target: Tier, count: int
    ) -> list[tuple[str, int]]:
        """Take up to `count` ready machines of `source` out of the lease lists, bound for
        `target` (state moving). Returns (machine, epoch) pairs: make_ready expects them."""
        return await self._take(pool, source, count, PoolState.MOVING, target)

    async def _take(
        self, pool: PoolKey, tier: Tier, count: int, state: PoolState, target: Tier | None
    ) -> list[tuple[str, int]]:
        if count <= 0:
            return []
        async with translated_redis_errors():
            flat = await self._scripts.run(
                "drain",
                [self.keys.ready(str(pool), tier)],
                self.keys.prefix,
                count,
                state.value,
                target.value if target else "",
            )
        return [(str(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def take_machine(
        self, machine_id: str, target: Tier | None = None
    ) -> tuple[int, Tier] | None:
        """Take one ready machine out of the lease lists (state moving), bound for `target`
        (its own tier when None). Returns (epoch, the tier it was in), or None when it is not
        ready: leased machines are never taken."""
        async with translated_redis_errors():
            taken = await self._scripts.run(
                "take_machine",
                [self.keys.machine(machine_id)],
                self.keys.prefix,
                machine_id,
                target.value if target else "",
            )
        if not taken:
            return None
        return int(taken[0]), Tier(str(taken[1]))

    async def forget(self, machine_id: str) -> str:
        async with translated_redis_errors():
            forgotten = await self._scripts.run(
                "forget_machine",
                [self.keys.machine(machine_id), self.keys.pending],
                self.keys.prefix,
                machine_id,
            )
        return str(forgotten)

    async def machine(self, machine_id: str) -> MachineRecord | None:
        async with translated_redis_errors():
            fields = await resolved(self._redis.hgetall(self.keys.machine(machine_id)))
        return _record(machine_id, fields) if fields else None

    async def machines(self, pool: PoolKey) -> list[MachineRecord]:
        async with translated_redis_errors():
            ids = sorted(await resolved(self._redis.smembers(self.keys.machines(str(pool)))))
            async with self._redis.pipeline(transaction=False) as pipe:
                for machine_id in ids:
                    pipe.hgetall(self.keys.machine(machine_id))
                rows = await pipe.execute()
        return [_record(m, f) for m, f in zip(ids, rows, strict=True) if f]

    async def pools(self) -> list[PoolKey]:
        async with translated_redis_errors():
            members = await resolved(self._redis.smembers(self.keys.pools))
        return sorted(PoolKey.parse(m) for m in members)

    async def add_pool(self, pool: PoolKey) -> None:
        async with translated_redis_errors():
            await resolved(self._redis.sadd(self.keys.pools, str(pool)))

    async def counts(self, pool: PoolKey) -> PoolCounts:
        return counts_of(await self.machines(pool))

    async def supply(self, pool: PoolKey) -> TierSupply:
        return tier_supply(await self.machines(pool))

    async def demand(self, pool: PoolKey, window_seconds: int) -> int:
        """Lease attempts (hits, misses and on-demand boots) in the last `window_seconds`."""
        async with translated_redis_errors():
            seconds, _ = await self._redis.time()
            newest = seconds // DEMAND_BUCKET_SECONDS
            buckets = range(newest - window_seconds // DEMAND_BUCKET_SECONDS + 1, newest + 1)
            values = await self._redis.mget([self.keys.demand(str(pool), b) for b in buckets])
        return sum(int(v) for v in values if v)

    @asynccontextmanager
    async def exclusive(
        self, name: str, *, ttl: float = 120.0, wait: float | None = None
    ) -> AsyncIterator[bool]:
        """A lock over all workers for work that must not run twice at once (a pool's resize:
        both would read the same counts and overshoot; reconcile: one would destroy as an
        orphan the machine whose record the other just rebuilt). Yields False when another
        holder has it, at once or after waiting `wait` seconds; it expires after `ttl` should
        its holder die."""
        lock = self._redis.lock(
            self.keys.lock(name),
            timeout=ttl,
            blocking=wait is not None,
            blocking_timeout=wait,
        )
        async with translated_redis_errors():
            acquired = bool(await lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(LockError):
                    await lock.release()

    async def set_token(self, machine_id: str, token: str | None) -> bool:
        """Keep the SHA-256 of the machine's (new) token, which its agent presents when it
        connects (the token itself never reaches Redis). Only on a record that exists: False
        when there is none (or no token)."""
        if not token:
            return False
        async with translated_redis_errors():
            written = await self._scripts.run(
                "set_token", [self.keys.machine(machine_id)], token_hash(token)
            )
        return int(written) == 1

    async def restore_leased(
        self,
        machine_id: str,
        pool: PoolKey,
        address: str,
        *,
        session_id: str,
        user_id: str,
        epoch: int,
        token: str,
    ) -> bool:
        """Rebuild the record of a leased machine that Redis lost, from the provider and the
        ledger. False when a record exists (it is never overwritten)."""
        if not token:
            raise ValueError(f"machine {machine_id} has no token: its record cannot be rebuilt")
        async with translated_redis_errors():
            restored = await self._scripts.run(
                "restore_machine",
                [
                    self.keys.machine(machine_id),
                    self.keys.machines(str(pool)),
                    self.keys.pools,
                    self.keys.user_sessions(user_id),
                ],
                machine_id,
                pool.template,
                pool.region,
                address,
                session_id,
                user_id,
                epoch,
                token_hash(token),
            )
        return int(restored) == 1

    async def stamp(
        self,
        machine_id: str,
        state: PoolState,
        field: str,
        *,
        epoch: int | None = None,
        clear: bool = False,
    ) -> float | None:
        """Set `field` to now (Redis' clock), or clear it, while the machine is in `state` (at
        `epoch`). None when it is not: it moved on, or its record is gone."""
        async with translated_redis_errors():
            stamped = await self._scripts.run(
                "stamp",
                [self.keys.machine(machine_id)],
                state.value,
                "" if epoch is None else epoch,
                field,
                "clear" if clear else "set",
            )
        return None if int(stamped) < 0 else float(stamped)

    async def agents_connected(self, machine_ids: list[str]) -> set[str] | None:
        """The machines whose agent has a socket open on some gateway right now: the gateway
        listens on the machine's channel exactly while that socket is open. None when this
        Redis does not tell (PUBSUB refused)."""
        if not machine_ids:
            return set()
        channels = {self.keys.machine_channel(m): m for m in machine_ids}
        async with translated_redis_errors():
            try:
                counts = await self._redis.pubsub_numsub(*channels)
            except ResponseError:
                return None
        return {channels[str(channel)] for channel, count in counts if int(count) > 0}

    async def create_backoff(self, pool: PoolKey) -> CreateBackoff:
        async with translated_redis_errors():
            fields = await resolved(self._redis.hgetall(self.keys.create_backoff(str(pool))))
        if not fields:
            return CreateBackoff()
        return CreateBackoff(
            failures=int(fields.get("failures", 0)),
            retry_at=float(fields.get("retry_at", 0)),
            error=str(fields.get("error", "")),
        )

    async def set_create_backoff(self, pool: PoolKey, backoff: CreateBackoff) -> None:
        key = self.keys.create_backoff(str(pool))
        async with translated_redis_errors():
            if backoff.failures == 0:
                await resolved(self._redis.delete(key))
                return
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(
                    key,
                    mapping={
                        "failures": backoff.failures,
                        "retry_at": backoff.retry_at,
                        "error": backoff.error,
                    },
                )
                await pipe.execute()

    async def token_hash(self, machine_id: str) -> str | None:
        async with translated_redis_errors():
            value = await resolved(self._redis.hget(self.keys.machine(machine_id), "token_sha256"))
        return str(value) if value else None

    async def tier_hits(self, pool: PoolKey) -> dict[Tier, int]:
        """Leases served per tier (the hot count is hits minus the lower tiers')."""
        async with translated_redis_errors():
            hits, suspended, stopped = await resolved(
                self._redis.hmget(
                    self.keys.stats(str(pool)), ["hits", "hits_suspended", "hits_stopped"]
                )
            )
        lower = {Tier.SUSPENDED: int(suspended or 0), Tier.STOPPED: int(stopped or 0)}
        return {Tier.HOT: int(hits or 0) - sum(lower.values()), **lower}

    async def hit_stats(self, pool: PoolKey) -> tuple[int, int]:
        async with translated_redis_errors():
            hits, misses = await resolved(
                self._redis.hmget(self.keys.stats(str(pool)), ["hits", "misses"])
            )
        return int(hits or 0), int(misses or 0)


def counts_of(records: list[MachineRecord]) -> PoolCounts:
    states: Counter[str] = Counter()
    for record in records:
        if record.state is PoolState.READY and record.tier is not Tier.HOT:
            states[record.tier.value] += 1
        else:
            states[record.state.value] += 1
    return PoolCounts(**states)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _seconds(value: str | None) -> float | None:
    return float(value) if value else None


def _record(machine_id: str, fields: dict[str, str]) -> MachineRecord:
    return MachineRecord(
        id=machine_id,
        state=PoolState(fields.get("state", PoolState.BOOTING.value)),
        epoch=int(fields.get("epoch", 0)),
        template=fields.get("template", ""),
        region=fields.get("region", ""),
        address=fields.get("address", ""),
        session_id=fields.get("session"),
        user_id=fields.get("user"),
        booting_at=_seconds(fields.get("booting_at")),
        tier=Tier(fields.get("tier") or Tier.HOT.value),
        taken_at=_seconds(fields.get("taken_at")),
        token_hash=fields.get("token_sha256") or None,
        agent_at=_seconds(fields.get("agent")),
        agent_lost_at=_seconds(fields.get("agent_lost_at")),
    )
