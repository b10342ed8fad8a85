"""Tiered pool replay (issue 4): a day of lease traffic against the Fly fake, on a virtual clock.

    .venv/bin/python -m tests.bench.tier_replay               # one day, three scenarios
    .venv/bin/python -m tests.bench.tier_replay --hours 6     # a shorter day (smoke run)

What runs, and what is simulated:

  * The pool's REAL code: the lease script (pool/store/lua/lease.lua on the real Redis at
    a database claimed for the run (tests/redis_claim.py; BENCH_REDIS_URL names one instead),
    under a key prefix per scenario that is
    cleared first; the scenarios run in parallel processes, --jobs), promote
    and release, the refill (pool.services.refill.resize_pool: the tier policy, creates, moves
    between
    tiers, destroys), the wake of a machine leased from a lower tier (pool.services.tiers.bring_to,
    what
    the wake_machine job does), on-demand boots (create_and_wait + claim_leased, what
    boot_session does) and the recycle (pool.services.lifecycle.recycle_machine). FlyProvider drives
    the Fly fake (tests/fakes/fly_api.py, in-process, requests validated against Fly's
    OpenAPI document (a sample of them: --validate-every) and held to Fly's rate limits).
  * A discrete-event simulation around it: arrivals, session lengths and the worker's crons
    are coroutines on an event loop whose clock is virtual (VirtualLoop): when no coroutine can
    run and no Redis command is in flight, time jumps to the next timer. A day takes minutes.
  * Not simulated: Postgres (the session commit costs the same in every scenario), arq (jobs
    start the moment they are queued, plus `--pickup` seconds), the web process. Demand for
    the policy is counted by the simulation itself over the same 5-minute window the worker
    uses, because the Lua scripts' demand buckets read Redis' real clock.

Fly's published latencies drive the fake: create ~10 s (9.5 s to start the boot, 0.5 s of
boot), start 0.5 s, resume 0.3 s; stop 0.3 s, suspend 2 s, and 30 ms per API call.

Traffic (seeded): a diurnal curve (trough at night, two humps in the working day, an evening
tail) as a Poisson process, plus bursts (a class or a demo opening projects together) of
15-40 leases within 30-120 s; session lengths log-normal (median 8 min, sigma 1.1: a heavy
tail), 30 s to 4 h.

Scenarios: (a) hot-only: a hot tier with an operator minimum B; (b) tiered: hot minimum 2,
suspended up to 20, stopped minimum B - 2; (c) no pool: every lease boots on demand. Each
reports the hit ratio (leases served without a create), p50/p99 time to machine (lease to a
started, healthy machine), and idle machine-seconds: started machines that serve no session
(weight 1.0), suspended (0.10) and stopped (0.06) ones (pool.core.policy.TierCosts; the cost model
is in docs/architecture.md). Exit status 1 when tiered misses >= 99 % hits or costs more than
half of hot-only.

Not collected by pytest (the name does not match test_*.py).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import random
import selectors
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from pool.core.policy import DemandSample, PoolBounds, TierBounds, TierCosts, TierLatencies
from pool.core.states import Tier
from pool.providers.fly import FlyProvider, FlyRuntime
from pool.services.context import PoolServices
from pool.services.lifecycle import recycle_machine
from pool.services.metrics import NullMetrics
from pool.services.refill import DEMAND_WINDOW_SECONDS, RefillSettings, create_and_wait, resize_pool
from pool.services.tiers import bring_to
from pool.store.inventory import Inventory, PoolKey
from pool.store.leasing import BootReserved, LeaseBroker, Leased, LeaseRequest
from tests.fakes.fly_api import FakeFlyAPI
from tests.fakes.fly_faults import FlyNetwork
from tests.fakes.fly_state import Latencies
from tests.fakes.virtual_clock import VirtualClock
from tests.redis_claim import redis_url

REDIS_URL = redis_url("BENCH_REDIS_URL", "bench-tiers")
POOL = PoolKey("react-web", "ams")
DAY = 86_400.0
WARM_UP = 900.0  # the pool fills before the day starts; not measured
FLY_LATENCIES = Latencies(
    create=9.5, boot=0.5, resume=0.3, stop=0.3, suspend=2.0, update=1.0, destroy=0.2
)
API_CALL = 0.03  # seconds per Machines API request
COSTS = TierCosts()
# Fake states by what they cost: a machine that runs (or boots) pays CPU and RAM.
RUNNING = frozenset(
    {"starting", "started", "stopping", "suspending", "replacing", "updating", "restarting"}
)
STORED_STOPPED = frozenset({"created", "stopped", "failed"})


# -- the virtual clock -------------------------------------------------------------------------


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O (the Redis socket) without blocking; when nothing is ready and no Redis
    command is in flight, it moves the loop's virtual clock to the next timer instead of
    sleeping. While a command is in flight it blocks for the reply, and virtual time stands
    still: a Redis call takes no simulated time."""

    loop: VirtualLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        events: list[Any] = super().select(0)
        if events or timeout == 0:
            return events
        if self.loop.io_busy():
            events = super().select(10.0)
            if not events:
                raise RuntimeError("no answer from Redis in 10 s")
            return events
        if timeout is None:
            raise RuntimeError("simulation deadlock: nothing scheduled and no I/O in flight")
        self.loop.advance(timeout)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual_now = 0.0
        self.io_busy: Callable[[], bool] = lambda: False
        selector = _VirtualSelector()
        selector.loop = self
        super().__init__(selector)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += max(seconds, 0.0)


class LoopClock(VirtualClock):
    """The fake's clock, read from the virtual loop (its sleep is the loop's)."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def advance(self, seconds: float) -> None:
        raise RuntimeError("time is the loop's")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


# -- traffic -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds into the day
    duration: float
    burst: bool


def diurnal(hour: float) -> float:
    """Relative lease rate over a day (1.0 at the peak): a night trough at ~8 % of the peak,
    a morning and an afternoon hump, an evening tail."""
    humps = (
        0.75 * math.exp(-(((hour - 10.5) / 2.2) ** 2))
        + 1.0 * math.exp(-(((hour - 15.0) / 2.5) ** 2))
        + 0.35 * math.exp(-(((hour - 20.5) / 1.8) ** 2))
    )
    return min(1.0, 0.08 + 0.92 * humps)


def traffic(
    seed: int, hours: float, peak_per_hour: float, bursts: int, median_session: float
) -> list[Arrival]:
    rng = random.Random(seed)
    length = hours * 3600.0
    peak = peak_per_hour / 3600.0

    def session() -> float:
        return min(4 * 3600.0, max(30.0, rng.lognormvariate(math.log(median_session), 1.1)))

    arrivals = []
    t = 0.0
    while True:  # thinning: a Poisson process at the peak rate, kept with diurnal(t)
        t += rng.expovariate(peak)
        if t >= length:
            break
        if rng.random() < diurnal((t / 3600.0) % 24):
            arrivals.append(Arrival(t, session(), burst=False))
    for _ in range(bursts):
        while True:  # bursts happen when people are around
            start = rng.uniform(0, length)
            if rng.random() < diurnal((start / 3600.0) % 24):
                break
        size, spread = rng.randint(15, 40), rng.uniform(30, 120)
        for _ in range(size):
            at = start + rng.uniform(0, spread)
            if at < length:
                arrivals.append(Arrival(at, session(), burst=True))
    return sorted(arrivals, key=lambda a: a.at)


# -- one scenario --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    bounds: TierBounds


@dataclass
class Result:
    scenario: str
    leases: int = 0
    served: Counter[str] = field(default_factory=Counter)  # hot, suspended, stopped, create
    refused: int = 0
    ttm: list[float] = field(default_factory=list)
    idle: dict[str, float] = field(
        default_factory=lambda: {"hot": 0.0, "suspended": 0.0, "stopped": 0.0}
    )
    api: Counter[str] = field(default_factory=Counter)
    rate_limit_violations: int = 0
    spec_violations: int = 0
    wall_seconds: float = 0.0

    @property
    def hit_ratio(self) -> float:
        served = sum(self.served.values())
        return (served - self.served["create"]) / served if served else 0.0

    @property
    def cost(self) -> float:
        return (
            self.idle["hot"] * COSTS.hot
            + self.idle["suspended"] * COSTS.suspended
            + self.idle["stopped"] * COSTS.stopped
        )

    def quantile(self, q: float) -> float:
        if not self.ttm:
            return math.nan
        ordered = sorted(self.ttm)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class Simulation:
    def __init__(
        self, scenario: Scenario, arrivals: list[Arrival], args: argparse.Namespace
    ) -> None:
        self.scenario = scenario
        self.arrivals = arrivals
        self.args = args
        self.settings = RefillSettings(
            refill_seconds=args.refill_seconds,
            headroom=args.headroom,
            max_creates_per_run=8,  # Fly creates: 1/s after a burst of 3, a run every 5 s
            boot_timeout=120.0,
            latencies=TierLatencies(resume=0.3, start=0.5, reaction=args.resize_interval),
            costs=COSTS,
            max_moves_per_run=16,
            move_timeout=120.0,
        )
        self.result = Result(scenario.name)
        self.metrics = NullMetrics()
        self.assigned: set[str] = set()  # machines serving a session right now
        self.recent: deque[float] = deque()  # lease attempts, for the demand window
        self.tasks: set[asyncio.Task[None]] = set()
        self.resizing = False

    def demand(self) -> DemandSample:
        now = asyncio.get_running_loop().time()
        while self.recent and self.recent[0] <= now - DEMAND_WINDOW_SECONDS:
            self.recent.popleft()
        return DemandSample(len(self.recent), DEMAND_WINDOW_SECONDS)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> Result:
        loop = asyncio.get_running_loop()
        self.redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        pool = self.redis.connection_pool
        loop.io_busy = lambda: bool(pool._in_use_connections)  # type: ignore[attr-defined]
        prefix = f"bench-tiers-{self.scenario.name.replace(' ', '-')}:"
        async for key in self.redis.scan_iter(match=f"{prefix}*", count=1000):
            await self.redis.delete(key)
        self.inventory = Inventory(self.redis, prefix=prefix)
        self.broker = LeaseBroker(
            self.redis, pending_ttl_ms=60_000, ondemand_max=1_000_000, prefix=prefix
        )
        self.fake = FakeFlyAPI(
            LoopClock(), latencies=FLY_LATENCIES, check_answers=False, regions=("ams", "fra")
        )
        self.fake.request_latency = dict.fromkeys(_OPERATIONS, API_CALL)
        _sample_validation(self.fake, self.args.validate_every)
        self.provider = FlyProvider(
            "preview-test",
            "test-token",
            "registry.fly.io/preview-sandbox@sha256:" + "c" * 64,
            regions=("ams", "fra"),
            runtime=FlyRuntime(
                transport=FlyNetwork(self.fake.app),
                clock=loop.time,
                sleep=asyncio.sleep,
                rand=random.Random(7).random,
            ),
        )
        self.services = PoolServices(
            # Never opened: a recycle touches no database (and none runs in the replay).
            db=AsyncConnectionPool("", open=False),
            broker=self.broker,
            inventory=self.inventory,
            provider=self.provider,
            enqueue_recycle=_recycled_in_place,
            metrics=self.metrics,
        )
        began = time.perf_counter()
        try:
            self.spawn(self.cron())
            await asyncio.sleep(WARM_UP)
            self.spawn(self.sample())
            for arrival in self.arrivals:
                await asyncio.sleep(WARM_UP + arrival.at - loop.time())
                self.spawn(self.session(arrival))
            await asyncio.sleep(WARM_UP + self.args.hours * 3600.0 - loop.time())
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.provider.aclose()
            async for key in self.redis.scan_iter(match=f"{prefix}*", count=1000):
                await self.redis.delete(key)
            await self.redis.aclose()
        self.result.wall_seconds = time.perf_counter() - began
        self.result.api = Counter(r.operation for r in self.fake.requests)
        self.result.rate_limit_violations = len(self.fake.rate_limit_violations)
        self.result.spec_violations = len(self.fake.spec_violations)
        return self.result

    async def cron(self) -> None:
        """The worker's resize cron (and the API's nudges share its guard)."""
        while True:
            self.nudge()
            await asyncio.sleep(self.args.resize_interval)

    def nudge(self) -> None:
        if not self.resizing:
            self.resizing = True
            self.spawn(self.resize())

    async def resize(self) -> None:
        try:
            await resize_pool(
                self.services,
                POOL,
                self.scenario.bounds,
                self.settings,
                demand=self.demand(),
                clock=asyncio.get_running_loop().time,  # create backoff on the virtual clock
            )
        finally:
            self.resizing = False

    async def session(self, arrival: Arrival) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.recent.append(began)
        self.result.leases += 1
        session_id = uuid.uuid4()
        outcome = await self.broker.lease(
            LeaseRequest(POOL.template, POOL.region, uuid.uuid4(), session_id, 10**6, 10**6, 10**6)
        )
        if isinstance(outcome, Leased):
            machine_id, epoch = outcome.machine_id, outcome.epoch
            await self.broker.promote(machine_id, epoch, session_id)  # after the commit
            if outcome.needs_wake:
                self.assigned.add(machine_id)
                self.nudge()
                await bring_to(self.provider, machine_id, Tier.HOT, self.settings.boot_timeout)
            served = outcome.tier.value
        elif isinstance(outcome, BootReserved):
            self.nudge()
            machine = await create_and_wait(self.inventory, self.provider, POOL, self.settings)
            self.assigned.add(machine.id)
            claimed = await self.inventory.claim_leased(
                machine.id, POOL, machine.address, str(session_id), "bench"
            )
            assert claimed is not None
            machine_id, epoch, served = machine.id, claimed, "create"
        else:
            self.result.refused += 1
            return
        self.assigned.add(machine_id)
        if began >= WARM_UP:
            self.result.served[served] += 1
            self.result.ttm.append(loop.time() - began)
        await asyncio.sleep(arrival.duration)
        self.assigned.discard(machine_id)
        assert await self.broker.release(machine_id, epoch)
        await asyncio.sleep(self.args.pickup)
        await recycle_machine(
            self.services,
            machine_id,
            epoch + 1,
            bounds=self.scenario.bounds,
            settings=self.settings,
            demand=self.demand(),
        )

    async def sample(self) -> None:
        """Every second, what the fake's machines that serve no session cost."""
        live: dict[str, Any] = {}
        seen = 0
        idle = self.result.idle
        while True:
            now = asyncio.get_running_loop().time()
            machines = self.fake.machines
            if len(machines) > seen:
                for machine in list(machines.values())[seen:]:
                    live[machine.id] = machine
                seen = len(machines)
            for machine_id, machine in list(live.items()):
                machine.settle(now)
                state = machine.state
                if state in ("destroying", "destroyed"):
                    del live[machine_id]
                elif machine_id in self.assigned:
                    continue
                elif state in RUNNING:
                    idle["hot"] += 1.0
                elif state == "suspended":
                    idle["suspended"] += 1.0
                elif state in STORED_STOPPED:
                    idle["stopped"] += 1.0
            await asyncio.sleep(1.0)


_OPERATIONS = (
    "Machines_list",
    "Machines_create",
    "Machines_show",
    "Machines_update",
    "Machines_delete",
    "Machines_start",
    "Machines_stop",
    "Machines_suspend",
    "Machines_wait",
    "Machines_create_lease",
    "Machines_show_lease",
    "Machines_release_lease",
    "Machines_exec",
)


async def _recycled_in_place(machine_id: str, epoch: int) -> None:
    raise AssertionError(f"the replay recycles {machine_id} itself; nothing is queued")


def _sample_validation(fake: FakeFlyAPI, every: int) -> None:
    """Validate every `every`-th request against the OpenAPI document (openapi-core takes
    ~1.5 ms a request, half the replay's time; the integration tests validate them all)."""
    validator = fake._validator
    check = validator.request_errors
    count = 0

    def sampled(request: Request, body: bytes) -> list[str]:
        nonlocal count
        count += 1
        return check(request, body) if count % every == 0 else []

    validator.request_errors = sampled  # type: ignore[method-assign]


def run_scenario(scenario: Scenario, arrivals: list[Arrival], args: argparse.Namespace) -> Result:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(Simulation(scenario, arrivals, args).run())
    finally:
        loop.close()


# -- report --------------------------------------------------------------------------------------


def scenarios(buffer: int) -> list[Scenario]:
    return [
        Scenario("hot-only", TierBounds(hot=PoolBounds(buffer, 60))),
        Scenario(
            "tiered",
            TierBounds(
                hot=PoolBounds(2, 60),
                suspended=PoolBounds(0, 20),
                stopped=PoolBounds(max(buffer - 2, 0), 60),
            ),
        ),
        Scenario("no pool", TierBounds(hot=PoolBounds(0, 0))),
    ]


def describe(result: Result, hot_only_cost: float) -> dict[str, Any]:
    hours = 3600.0
    return {
        "scenario": result.scenario,
        "leases": sum(result.served.values()),
        "served": dict(result.served),
        "refused": result.refused,
        "hit_ratio": round(result.hit_ratio, 4),
        "ttm_p50_s": round(result.quantile(0.50), 3),
        "ttm_p99_s": round(result.quantile(0.99), 3),
        "idle_hot_machine_hours": round(result.idle["hot"] / hours, 1),
        "idle_suspended_machine_hours": round(result.idle["suspended"] / hours, 1),
        "idle_stopped_machine_hours": round(result.idle["stopped"] / hours, 1),
        "idle_cost_started_machine_hours": round(result.cost / hours, 1),
        "cost_vs_hot_only": round(result.cost / hot_only_cost, 3) if hot_only_cost else None,
        "creates": result.api["Machines_create"],
        "api_by_operation": dict(sorted(result.api.items())),
        "api_requests": sum(result.api.values()),
        "rate_limit_violations": result.rate_limit_violations,
        "spec_violations": result.spec_violations,
        "wall_seconds": round(result.wall_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--peak-per-hour", type=float, default=240.0)
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--median-session", type=float, default=480.0, help="seconds")
    parser.add_argument("--buffer", type=int, default=20, help="operator minimum B")
    parser.add_argument("--refill-seconds", type=float, default=15.0)
    parser.add_argument("--headroom", type=float, default=0.5)
    parser.add_argument("--resize-interval", type=float, default=5.0)
    parser.add_argument("--pickup", type=float, default=0.1, help="job pickup, seconds")
    parser.add_argument("--only", choices=["hot-only", "tiered", "no pool"], action="append")
    parser.add_argument(
        "--validate-every", type=int, default=20, help="validate every Nth request (1: all)"
    )
    parser.add_argument("--jobs", type=int, default=3, help="scenarios run in parallel")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    arrivals = traffic(args.seed, args.hours, args.peak_per_hour, args.bursts, args.median_session)
    bursty = sum(a.burst for a in arrivals)
    print(
        f"{len(arrivals)} leases over {args.hours:g} h ({bursty} in {args.bursts} bursts), "
        f"seed {args.seed}; B = {args.buffer}"
    )
    chosen = [s for s in scenarios(args.buffer) if not args.only or s.name in args.only]
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as workers:
        futures = [workers.submit(run_scenario, s, arrivals, args) for s in chosen]
        for future in concurrent.futures.as_completed(futures):
            done = future.result()
            print(f"  {done.scenario}: done in {done.wall_seconds:.0f} s", flush=True)
    results = [f.result() for f in futures]
    hot_only = next((r.cost for r in results if r.scenario == "hot-only"), 0.0)
    rows = [describe(r, hot_only) for r in results]
    columns = [
        ("scenario", "scenario"),
        ("hit_ratio", "hits"),
        ("ttm_p50_s", "p50 s"),
        ("ttm_p99_s", "p99 s"),
        ("idle_hot_machine_hours", "hot h"),
        ("idle_suspended_machine_hours", "susp h"),
        ("idle_stopped_machine_hours", "stop h"),
        ("idle_cost_started_machine_hours", "cost h"),
        ("cost_vs_hot_only", "vs hot"),
        ("creates", "creates"),
        ("rate_limit_violations", "429s"),
    ]
    print("  ".join(f"{title:>9}" for _, title in columns))
    for row in rows:
        print("  ".join(f"{'-' if row[key] is None else row[key]!s:>9}" for key, _ in columns))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": vars(args), "results": rows}, out, indent=2)
    tiered = next((r for r in results if r.scenario == "tiered"), None)
    failures = []
    if tiered is not None:
        if tiered.hit_ratio < 0.99:
            failures.append(f"tiered hit ratio {tiered.hit_ratio:.4f} < 0.99")
        if hot_only and tiered.cost > 0.5 * hot_only:
            failures.append(f"tiered cost {tiered.cost / hot_only:.3f} of hot-only > 0.5")
    if any(r.rate_limit_violations or r.spec_violations for r in results):
        failures.append("the provider broke Fly's rate limits or OpenAPI document")
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
