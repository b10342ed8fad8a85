"""Fly's rate limits shared by several processes through Redis (pool/providers/fly_budget.py).

Each FlyProvider below stands for one `worker` process: its own HTTP client and limiter, the
same Fly app. The fake counts every request Fly would have refused. Time is real here (the
budget lives on Redis' clock), so the fake runs on the wall clock too, and the bursts are kept
small.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from pool.core.errors import ProviderError
from pool.core.provider import MachineSpec
from pool.providers.fly import FlyProvider, FlyRuntime, FlyTuning, RetryPolicy
from pool.providers.fly_budget import SharedRateLimiter
from pool.providers.fly_ratelimit import Rate
from tests.fakes.fly_api import FakeFlyAPI
from tests.fakes.fly_faults import FlyNetwork

APP = "preview-test"
TOKEN = "test-token"
IMAGE = "registry.fly.io/preview-sandbox@sha256:" + "b" * 64
SPEC = MachineSpec(template="react-web", region="ams")


class WallClock:
    """The fake's clock, on real time: the shared budget is kept on Redis' clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def fake() -> FakeFlyAPI:
    fake = FakeFlyAPI(WallClock(), tokens={TOKEN: "pool@example.com"})  # type: ignore[arg-type]
    fake.check_answers = False  # this file is about pacing; the other Fly tests check answers
    return fake


def _process(fake: FakeFlyAPI, limiter: SharedRateLimiter | None) -> FlyProvider:
    # One try: a 429 surfaces as an error instead of being retried away.
    return FlyProvider(
        APP,
        TOKEN,
        IMAGE,
        regions=("ams",),
        limiter=limiter,
        tuning=FlyTuning(retry=RetryPolicy(attempts=1)),
        runtime=FlyRuntime(transport=FlyNetwork(fake.app)),
    )


async def _create_from_each(processes: list[FlyProvider], per_process: int) -> list[object]:
    calls = [p.create(SPEC) for p in processes for _ in range(per_process)]
    try:
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        for process in processes:
            await process.aclose()


async def test_processes_with_their_own_limiters_overspend_flys_app_budget(
    fake: FakeFlyAPI,
) -> None:
    # The control: each process alone stays within 3 creates, together they send 6 at once.
    outcomes = await _create_from_each([_process(fake, None), _process(fake, None)], 3)

    refused = [o for o in outcomes if isinstance(o, ProviderError)]
    assert len(fake.rate_limit_violations) == 3 and len(refused) == 3


async def test_processes_sharing_the_budget_in_redis_stay_within_it(
    fake: FakeFlyAPI, redis_client: Redis
) -> None:
    processes = [_process(fake, SharedRateLimiter(redis_client)) for _ in range(2)]
    started = time.monotonic()

    outcomes = await _create_from_each(processes, 3)

    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert fake.rate_limit_violations == []
    assert len(fake.calls("Machines_create")) == 6
    # A burst of 3, then one a second: the last three waited their turn.
    assert time.monotonic() - started >= 3.0


async def test_the_shared_budget_is_per_action_and_scope(redis_client: Redis) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    limiter = SharedRateLimiter(
        redis_client,
        rates={"Machines_show": Rate(per_second=5.0, burst=2)},
        sleep=record,
    )
    for _ in range(4):
        await limiter.acquire("Machines_start", "m1")
    await limiter.acquire("Machines_start", "m2")  # another machine: its own bucket
    for _ in range(3):
        await limiter.acquire("Machines_show", "m1")

    # Machines_start: 1/s, burst 3 -> the fourth call waits about a second (plus the slack).
    # Machines_show here: 5/s, burst 2 -> the third call waits about 0.2 s.
    assert len(waits) == 2
    assert 0.95 <= waits[0] <= 1.03
    assert 0.15 <= waits[1] <= 0.21


async def test_without_redis_a_process_paces_itself_instead_of_failing_the_call() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    unreachable: Redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limiter = SharedRateLimiter(unreachable, sleep=record)
    try:
        for _ in range(4):
            await limiter.acquire("Machines_stop", "m1")
    finally:
        await unreachable.aclose()

    # Fly's limit kept by this process's own bucket: 3 at once, the fourth a second later.
    assert len(waits) == 1 and 0.9 <= waits[0] <= 1.01
