"""Store outages as the worker lives through them: which store is down and since when, how long
to wait before trying again, and the job wrappers that wait instead of failing.

One outage makes many operations fail (every cron tick, every queued job, the worker's own
polling). `OutageLog` says so once when the outage begins, naming the store and the error, and
once when the store answers again, with how long it was gone.

Jobs (arq calls them; every one is idempotent, so running one again is safe):

- a queued job (`outlasting`) that meets a store outage waits in place, probing the store with
  backoff, and runs again as soon as it answers; past half its timeout it hands itself back to
  arq (`Retry`) rather than be killed by the timeout, and runs later;
- a cron job (`skipping`) that meets an outage returns `{"skipped": ...}`: its next tick, a few
  seconds later, does the work, and a traceback per tick would bury the one line that matters.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from arq import Retry
from arq.typing import WorkerCoroutine

from pool.core.backoff import backoff_delay
from pool.core.errors import PoolUnavailable
from sql.errors import DatabaseUnavailable
from workers.context import WorkerContext

log = logging.getLogger(__name__)

Job = WorkerCoroutine


class Store(enum.Enum):
    POSTGRES = "Postgres"
    REDIS = "Redis"


def store_of(exc: BaseException) -> Store | None:
    """The store an error says is unreachable; None for any other error. Besides our own
    errors, redis-py's ConnectionError and TimeoutError reach here untranslated from arq's own
    Redis calls (polling, enqueueing cron ticks, recording results)."""
    if isinstance(exc, DatabaseUnavailable):
        return Store.POSTGRES
    if isinstance(
        exc, PoolUnavailable | redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    ):
        return Store.REDIS
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter (pool.core.backoff.backoff_delay): the ceiling doubles
    from `base` to `cap`; the wait is between (1 - jitter) and 1 times the ceiling, so many
    workers do not retry in lockstep."""

    base: float = 0.5
    cap: float = 10.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return backoff_delay(attempt, base=self.base, cap=self.cap, jitter=self.jitter, rand=rand)


class OutageLog:
    """One warning when a store goes down, one when it is back; nothing in between.
    `observe` hears every verdict (the process's `preview_store_up` gauge)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[Store, bool], None] | None = None,
    ) -> None:
        self._clock = clock
        self._observe = observe
        self._since: dict[Store, float] = {}

    def is_down(self, store: Store) -> bool:
        return store in self._since

    def down(self, store: Store, exc: BaseException) -> None:
        if self._observe is not None:
            self._observe(store, False)
        if store in self._since:
            log.debug("%s still unavailable: %s", store.value, exc)
            return
        self._since[store] = self._clock()
        log.warning(
            "%s is unavailable (%s: %s); the worker keeps running and retries with backoff",
            store.value,
            type(exc).__name__,
            exc,
        )

    def up(self, store: Store) -> None:
        if self._observe is not None:
            self._observe(store, True)
        since = self._since.pop(store, None)
        if since is not None:
            log.warning(
                "%s is available again after %.1f s of outage", store.value, self._clock() - since
            )


async def probe(deps: WorkerContext, store: Store) -> bool:
    """Does the store answer now? (A round trip, nothing else.)"""
    try:
        if store is Store.POSTGRES:
            async with deps.db.connection() as conn:
                await conn.execute("SELECT 1")
        else:
            await deps.redis.ping()
    except Exception:  # any failure means "not yet"; the caller keeps waiting
        return False
    return True


def outlasting(
    job: Job,
    *,
    budget: float,
    outages: OutageLog,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> Job:
    """`job`, run again once the store it found down answers; after `budget` seconds of
    waiting it is handed back to arq (Retry), deferred by the next backoff delay."""

    @functools.wraps(job)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + budget
        while True:
            try:
                return await job(ctx, *args, **kwargs)
            except Exception as exc:
                store = store_of(exc)
                if store is None:
                    raise
                outages.down(store, exc)
                delay = await _wait_for(ctx["deps"], store, deadline, policy, rand)
                if delay is not None:
                    raise Retry(defer=delay) from exc
                outages.up(store)

    return run


async def _wait_for(
    deps: WorkerContext,
    store: Store,
    deadline: float,
    policy: RetryPolicy,
    rand: Callable[[], float],
) -> float | None:
    """Wait until `store` answers (None), or until the next wait would pass `deadline`: then
    that wait, for arq to defer the job by."""
    attempt = 0
    while True:
        delay = policy.delay(attempt, rand)
        if time.monotonic() + delay > deadline:
            return delay
        await asyncio.sleep(delay)
        attempt += 1
        if await probe(deps, store):
            return None


def skipping(
    job: Job, *, outages: OutageLog, reads: tuple[Store, ...] = (Store.POSTGRES, Store.REDIS)
) -> Job:
    """A cron `job` that skips its tick while a store is down. `reads`: the stores a tick
    that went through has shown to answer (a Redis-only sampler says nothing of Postgres)."""

    @functools.wraps(job)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await job(ctx, *args, **kwargs)
        except Exception as exc:
            store = store_of(exc)
            if store is None:
                raise
            outages.down(store, exc)
            return {"skipped": f"{store.value} is unavailable"}
        # A tick that went through means the stores it reads answered; one that reads no
        # Postgres must not end a Postgres outage (the log would flap, up and down every tick).
        for store in reads:
            outages.up(store)
        return result

    return run
