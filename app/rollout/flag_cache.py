"""The flags, cached in each web process: read from Postgres at most once per `ttl` seconds,
and dropped at once when any process announces a change on the flags channel (Redis pub/sub).

Concurrency: one reader task owns the subscription; it only bumps a generation counter, so a
message costs nothing. `get` reloads under a lock (one query at a time, however many requests
wait), and a load that an invalidation overtook is used by the requests that waited for it but
not cached: the next request reads again. Pub/sub is at-most-once and may be down; the TTL is
the bound that holds regardless: a change reaches every process within `ttl` seconds, and
within milliseconds while pub/sub works. After the reader reconnects it invalidates too, since
it may have missed a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from app.rollout.decision import Choice, FlagSet
from sql.flags import Scope, StoredFlags

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 5.0
RECONNECT_SECONDS = 1.0
CHANGED = "changed"

Clock = Callable[[], float]


def flag_set(stored: StoredFlags) -> FlagSet:
    """The stored flags as decide_backend reads them."""
    by_scope: dict[Scope, dict[str, Choice]] = {scope: {} for scope in Scope}
    for override in stored.overrides:
        by_scope[override.scope][override.subject] = Choice(override.backend)
    return FlagSet(
        kill_switch=stored.rollout.kill_switch,
        percentage=stored.rollout.percentage,
        projects={uuid.UUID(k): v for k, v in by_scope[Scope.PROJECT].items()},
        users={uuid.UUID(k): v for k, v in by_scope[Scope.USER].items()},
        plans=by_scope[Scope.PLAN],
    )


class FlagCache:
    def __init__(
        self,
        load: Callable[[], Awaitable[FlagSet]],
        redis: Redis,
        channel: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._load = load
        self._redis = redis
        self._channel = channel
        self._ttl = ttl
        self._clock = clock
        self._value: FlagSet | None = None
        self._expires = 0.0
        self._generation = 0
        self._lock = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def ttl(self) -> float:
        return self._ttl

    async def start(self) -> None:
        """Subscribe before returning, so no change announced after start is missed."""
        self._pubsub = await self._subscribe()
        self._reader = asyncio.create_task(self._listen_forever(), name="flag-cache")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._close_pubsub()

    def invalidate(self) -> None:
        self._generation += 1
        self._expires = 0.0

    async def get(self) -> FlagSet:
        if self._value is not None and self._clock() < self._expires:
            return self._value
        async with self._lock:
            if self._value is not None and self._clock() < self._expires:
                return self._value  # another request reloaded while this one waited
            generation = self._generation
            value = await self._load()
            self._value = value
            if generation == self._generation:
                self._expires = self._clock() + self._ttl
            return value

    async def _subscribe(self) -> PubSub:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        return pubsub

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None

    async def _listen_forever(self) -> None:
        failing = False
        while True:
            try:
                if self._pubsub is None:
                    self._pubsub = await self._subscribe()
                    self.invalidate()  # a change may have gone by while unsubscribed
                # Blocking read: the reader waits for a message and does nothing else.
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("flag cache lost Redis pub/sub (changes wait for the TTL): %s", exc)
                failing = True
                await self._close_pubsub()
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            if failing:
                failing = False
                log.info("flag cache is subscribed again")
            if message is not None and message.get("type") == "message":
                self.invalidate()


async def announce_change(redis: Redis, channel: str) -> bool:
    """Tell every web process the flags changed; False (logged) when Redis could not be told:
    the change is stored and reaches them within their cache's TTL."""
    try:
        await redis.publish(channel, CHANGED)
    except (RedisError, OSError) as exc:
        log.warning("flags changed but the change could not be announced: %s", exc)
        return False
    return True
