"""Leasing machines: the atomic take, promotion after the Postgres commit, release, heartbeat.

A lease is *pending* from the moment the Lua script takes a machine until the API has committed
the session to Postgres and promoted it. If the API dies in between, the pending lease expires;
the reaper fences it in Postgres (sql.sessions.fence_lease) and gives the machine back. Every
lease carries the machine's fencing epoch, bumped on every change of hands, and every script
that changes a machine checks it: a stale holder changes nothing.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from pool.core.states import Tier
from pool.store.keys import DEFAULT_PREFIX, Keys, pool_name
from pool.store.redis_errors import resolved, translated_redis_errors
from pool.store.scripts import Scripts


class Heartbeat(enum.Enum):
    RECORDED = 1
    STALE = 0  # the machine is no longer this lease's (another epoch, or not leased)
    UNKNOWN = -1  # Redis holds no record of the machine (lost with Redis, or the machine gone)


@dataclass(frozen=True)
class LeaseRequest:
    template: str
    region: str
    user_id: uuid.UUID
    session_id: uuid.UUID
    max_concurrent: int
    creations_per_minute: int
    creation_burst: int


@dataclass(frozen=True)
class Leased:
    """A pending lease. A hot machine serves at once; a suspended or stopped one must be woken
    (started) first: the session is answered 202 `booting` and a worker wakes it."""

    machine_id: str
    epoch: int
    address: str
    tier: Tier = Tier.HOT

    @property
    def needs_wake(self) -> bool:
        return self.tier is not Tier.HOT


@dataclass(frozen=True)
class BootReserved:
    """The pool was empty; an on-demand boot slot is held for this session."""


@dataclass(frozen=True)
class PoolEmpty:
    pass


@dataclass(frozen=True)
class QuotaExceeded:
    retry_after_ms: int


@dataclass(frozen=True)
class RateLimited:
    retry_after_ms: int


LeaseOutcome = Leased | BootReserved | PoolEmpty | QuotaExceeded | RateLimited


@dataclass(frozen=True)
class PendingLease:
    machine_id: str
    epoch: int
    session_id: str
    template: str
    region: str


class LeaseBroker:
    def __init__(
        self,
        redis: Redis,
        *,
        pending_ttl_ms: int,
        ondemand_max: int,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._redis = redis
        self._scripts = Scripts(redis)
        self.keys = Keys(prefix)
        self.pending_ttl_ms = pending_ttl_ms
        self.ondemand_max = ondemand_max

    @property
    def redis(self) -> Redis:
        return self._redis

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    async def lease(self, request: LeaseRequest) -> LeaseOutcome:
        emission_ms = max(1, 60_000 // max(1, request.creations_per_minute))
        keys, user = self.keys, str(request.user_id)
        pool = pool_name(request.template, request.region)
        async with translated_redis_errors():
            result = await self._scripts.run(
                "lease",
                [
                    keys.user_sessions(user),
                    keys.creation_rate(user),
                    keys.stats(pool),
                    *keys.ready_lists(pool),
                    keys.pending,
                    keys.booting_sessions(pool),
                ],
                keys.prefix,
                request.template,
                request.region,
                user,
                str(request.session_id),
                self.pending_ttl_ms,
                request.max_concurrent,
                emission_ms,
                request.creation_burst,
                self.ondemand_max,
            )
        match result:
            case ["leased", machine_id, epoch, address, tier]:
                return Leased(str(machine_id), int(epoch), str(address or ""), Tier(str(tier)))
            case ["boot"]:
                return BootReserved()
            case ["empty"]:
                return PoolEmpty()
            case ["quota", retry]:
                return QuotaExceeded(int(retry))
            case ["rate", retry]:
                return RateLimited(int(retry))
        raise AssertionError(f"unexpected lease script result {result!r}")

    async def promote(self, machine_id: str, epoch: int, session_id: uuid.UUID) -> bool:
        async with translated_redis_errors():
            done = await self._scripts.run(
                "promote",
                [self.keys.machine(machine_id), self.keys.pending],
                machine_id,
                epoch,
                str(session_id),
                self.keys.machine_channel(machine_id),
            )
        return int(done) == 1

    async def release(self, machine_id: str, epoch: int, *, return_to_ready: bool = False) -> bool:
        """End the lease at `epoch`. The machine goes to recycling — or straight back to ready
        when `return_to_ready` and the lease was still pending (no user ever saw the machine).
        False when `epoch` is stale: the caller no longer holds this machine."""
        async with translated_redis_errors():
            outcome = await self._scripts.run(
                "release",
                [self.keys.machine(machine_id), self.keys.pending],
                self.keys.prefix,
                machine_id,
                epoch,
                "1" if return_to_ready else "0",
            )
        return str(outcome) == "ok"

    async def heartbeat(self, machine_id: str, epoch: int) -> Heartbeat:
        async with translated_redis_errors():
            return Heartbeat(
                int(await self._scripts.run("heartbeat", [self.keys.machine(machine_id)], epoch))
            )

    async def forget_session(
        self, template: str, region: str, session_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        """Drop a session that holds no machine (booting, or its commit failed)."""
        async with translated_redis_errors():
            await self._scripts.run(
                "forget_session",
                [
                    self.keys.booting_sessions(pool_name(template, region)),
                    self.keys.user_sessions(str(user_id)),
                ],
                str(session_id),
            )

    async def expired_pending(self, limit: int = 100) -> list[PendingLease]:
        """Pending leases past their deadline (by Redis' clock)."""
        async with translated_redis_errors():
            seconds, micros = await self._redis.time()
            now_ms = seconds * 1000 + micros // 1000
            machine_ids = await self._redis.zrangebyscore(
                self.keys.pending, "-inf", now_ms, start=0, num=limit
            )
            found = []
            for machine_id in machine_ids:
                state, epoch, session, template, region = await resolved(
                    self._redis.hmget(
                        self.keys.machine(machine_id),
                        ["state", "epoch", "session", "template", "region"],
                    )
                )
                if state != "pending":
                    await self._redis.zrem(self.keys.pending, machine_id)
                    continue
                found.append(
                    PendingLease(machine_id, int(epoch), str(session), str(template), str(region))
                )
        return found

    async def live_sessions_of(self, user_id: uuid.UUID) -> set[str]:
        async with translated_redis_errors():
            members = await resolved(self._redis.smembers(self.keys.user_sessions(str(user_id))))
        return {str(m) for m in members}

    async def drop_user_sessions(self, user_id: uuid.UUID, session_ids: set[str]) -> None:
        if session_ids:
            async with translated_redis_errors():
                key = self.keys.user_sessions(str(user_id))
                await resolved(self._redis.srem(key, *session_ids))

    async def users_with_sessions(self) -> list[uuid.UUID]:
        users = []
        async with translated_redis_errors():
            async for key in self._redis.scan_iter(match=self.keys.every_user_sessions, count=500):
                users.append(uuid.UUID(self.keys.user_of(str(key))))
        return users
