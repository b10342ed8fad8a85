import itertools
import math
from collections.abc import Callable

import pytest

from pool.core.backoff import backoff_delay
from pool.core.policy import (
    HARD_MAX_POOL_SIZE,
    DemandSample,
    PoolBounds,
    TierBounds,
    TierCounts,
    TierInput,
    plan_tiers,
    tier_targets,
)
from pool.core.states import Tier

# The local provider's pools, and any pool whose provider cannot suspend: the hot tier alone.
# (test_tier_policy.py shows that lower-tier bounds of 0/0 plan exactly the same.)
HOT_ONLY = frozenset({Tier.HOT})


def sizing(
    *,
    min: int = 0,
    max: int = 100,
    leases: int = 0,
    window: float = 60.0,
    refill: float = 30.0,
    headroom: float = 0.0,
    ready: int = 0,
    booting: int = 0,
) -> TierInput:
    return TierInput(
        bounds=TierBounds(PoolBounds(min=min, max=max)),
        demand=DemandSample(lease_count=leases, window_seconds=window),
        refill_seconds=refill,
        headroom=headroom,
        ready=TierCounts(hot=ready),
        arriving=TierCounts(hot=booting),
        tiers=HOT_ONLY,
    )


def pinned(target: int, *, ready: int = 0, booting: int = 0) -> TierInput:
    """No demand and min == max, so the target is exactly `target`."""
    return sizing(min=target, max=target, ready=ready, booting=booting)


def hot_target(inp: TierInput) -> int:
    targets = tier_targets(inp)
    assert targets.suspended == targets.stopped == 0
    return targets.hot


def hot_plan(inp: TierInput, *, max_creates: int) -> tuple[int, int, int]:
    """(target, create, destroy) of one refill run of a hot-only pool, which never moves."""
    plan = plan_tiers(inp, max_creates_per_run=max_creates, max_moves_per_run=8)
    assert plan.moves == ()
    assert plan.destroy.suspended == plan.destroy.stopped == 0
    return plan.target, plan.create, plan.destroy.hot


@pytest.mark.parametrize(
    ("inp", "expected"),
    [
        pytest.param(sizing(min=2, max=10), 2, id="zero demand gives min"),
        pytest.param(sizing(min=0, max=10), 0, id="zero demand and min 0 gives an empty pool"),
        pytest.param(sizing(min=2, leases=600, refill=0.0), 2, id="instant boots need no pool"),
        pytest.param(sizing(min=1, max=10, leases=600), 10, id="demand above max gives max"),
        # 6 leases / 60 s = 0.1/s; x 30 s boot = 3 leases arrive during one boot.
        pytest.param(sizing(leases=6), 3, id="little's law without headroom"),
        pytest.param(sizing(min=5, leases=6), 5, id="min above demand wins"),
        pytest.param(sizing(leases=6, headroom=0.5), 5, id="headroom 4.5 rounds up to 5"),
        pytest.param(sizing(leases=6, headroom=1.0), 6, id="headroom 100% doubles"),
        pytest.param(sizing(leases=1), 1, id="half a machine in flight rounds up to 1"),
        pytest.param(sizing(leases=3, window=10.0, refill=10.0), 3, id="0.3/s x 10 s is exactly 3"),
        pytest.param(sizing(leases=100, headroom=0.1), 55, id="50 x 1.1 is 55, not 56"),
        pytest.param(sizing(leases=101, headroom=0.1), 56, id="50.5 x 1.1 = 55.55 rounds up"),
        pytest.param(sizing(max=1000, leases=10**6, refill=1e6), 1000, id="absurd demand clamps"),
    ],
)
def test_hot_target(inp: TierInput, expected: int) -> None:
    assert hot_target(inp) == expected


@pytest.mark.parametrize(
    ("inp", "max_creates", "expected"),
    [
        pytest.param(pinned(5), 10, (5, 5, 0), id="empty pool fills"),
        pytest.param(pinned(5, ready=1, booting=3), 10, (5, 1, 0), id="booting counts as supply"),
        pytest.param(pinned(5, booting=5), 10, (5, 0, 0), id="booting covers target"),
        pytest.param(pinned(5, ready=5), 10, (5, 0, 0), id="full pool does nothing"),
        pytest.param(pinned(2, ready=5), 10, (2, 0, 3), id="surplus destroys ready"),
        pytest.param(
            pinned(2, ready=5, booting=4),
            10,
            (2, 0, 3),
            id="surplus never counts booting",
        ),
        pytest.param(pinned(5, ready=2, booting=6), 10, (5, 0, 0), id="booting surplus waits"),
        pytest.param(pinned(0, ready=3), 10, (0, 0, 3), id="target 0 drains ready"),
        pytest.param(pinned(10), 3, (10, 3, 0), id="creates capped per run"),
        pytest.param(pinned(10, ready=8), 3, (10, 2, 0), id="cap above need is no-op"),
        pytest.param(pinned(10), 0, (10, 0, 0), id="cap 0 pauses creation"),
        pytest.param(
            sizing(max=10, leases=6, headroom=0.5, ready=1, booting=1),
            10,
            (5, 3, 0),
            id="demand-driven target",
        ),
    ],
)
def test_hot_plan(inp: TierInput, max_creates: int, expected: tuple[int, int, int]) -> None:
    assert hot_plan(inp, max_creates=max_creates) == expected


@pytest.mark.parametrize(
    ("low", "high", "problem"),
    [
        (-1, 5, "pool min must be >= 0"),
        (6, 5, "pool min 6 is above pool max 5"),
        (0, HARD_MAX_POOL_SIZE + 1, "above the hard cap"),
    ],
)
def test_invalid_bounds_raise(low: int, high: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PoolBounds(min=low, max=high)


@pytest.mark.parametrize(("low", "high"), [(0, 0), (3, 3), (0, HARD_MAX_POOL_SIZE)])
def test_edge_bounds_are_valid(low: int, high: int) -> None:
    assert PoolBounds(min=low, max=high) == PoolBounds(low, high)


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: DemandSample(lease_count=-1, window_seconds=60), "lease_count"),
        (lambda: DemandSample(lease_count=1, window_seconds=0), "window_seconds"),
        (lambda: DemandSample(lease_count=1, window_seconds=math.inf), "window_seconds"),
        (lambda: DemandSample(lease_count=1, window_seconds=math.nan), "window_seconds"),
        (lambda: sizing(refill=-1.0), "refill_seconds"),
        (lambda: sizing(refill=math.inf), "refill_seconds"),
        (lambda: sizing(headroom=math.nan), "headroom"),
        (lambda: sizing(ready=-1), "negative count"),
        (lambda: sizing(booting=-1), "negative count"),
        (lambda: hot_plan(pinned(1), max_creates=-1), "max_creates_per_run"),
    ],
)
def test_invalid_inputs_raise(build: Callable[[], object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build()


def test_demand_rate_is_leases_per_second() -> None:
    assert DemandSample(lease_count=30, window_seconds=60).rate == 0.5


def never_jitter() -> float:
    return 0.0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (4, 16.0), (5, 30.0), (60, 30.0), (10_000, 30.0)],
)
def test_backoff_doubles_then_caps(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, base=1.0, cap=30.0, jitter=1.0, rand=never_jitter) == expected


@pytest.mark.parametrize(
    ("jitter", "r", "expected"),
    [
        (0.0, 0.99, 4.0),  # no jitter ignores rand
        (1.0, 0.5, 2.0),  # full jitter: anywhere in (0, ceiling]
        (1.0, 0.75, 1.0),
        (0.5, 0.5, 3.0),  # half jitter: within (2, 4]
    ],
)
def test_backoff_jitter_takes_a_fraction_of_the_ceiling(
    jitter: float, r: float, expected: float
) -> None:
    assert backoff_delay(2, base=1.0, cap=30.0, jitter=jitter, rand=lambda: r) == expected


@pytest.mark.parametrize(
    ("attempt", "jitter", "r"),
    list(itertools.product([0, 3, 9, 100], [0.0, 0.25, 0.5, 1.0], [0.0, 0.3, 0.999999])),
)
def test_backoff_stays_within_jitter_band(attempt: int, jitter: float, r: float) -> None:
    ceiling = min(60.0, 0.5 * 2**attempt)
    delay = backoff_delay(attempt, base=0.5, cap=60.0, jitter=jitter, rand=lambda: r)
    assert ceiling * (1 - jitter) <= delay <= ceiling
    assert delay > 0


def backoff(
    attempt: int = 1,
    *,
    base: float = 1.0,
    cap: float = 30.0,
    jitter: float = 1.0,
    rand: Callable[[], float] = never_jitter,
) -> float:
    return backoff_delay(attempt, base=base, cap=cap, jitter=jitter, rand=rand)


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: backoff(-1), "attempt"),
        (lambda: backoff(base=0.0), "base"),
        (lambda: backoff(base=math.nan), "base"),
        (lambda: backoff(cap=0.5), "cap"),
        (lambda: backoff(cap=math.inf), "cap"),
        (lambda: backoff(jitter=1.5), "jitter"),
        (lambda: backoff(jitter=-0.1), "jitter"),
        (lambda: backoff(rand=lambda: 1.0), "rand"),
        (lambda: backoff(rand=lambda: -0.5), "rand"),
    ],
)
def test_backoff_rejects_bad_arguments(call: Callable[[], float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call()


def test_plan_invariants_over_a_grid() -> None:
    """Exhaustive over small ranges: target within bounds, never create and destroy together,
    creates within the cap, destroys only ready machines, and a plan reaches the target."""
    grid = itertools.product(
        [(0, 0), (0, 3), (2, 2), (1, 8)],  # bounds
        [0, 1, 7, 60, 5000],  # leases per 60 s
        [0.0, 12.5, 45.0],  # refill seconds
        [0.0, 0.1, 0.5, 2.0],  # headroom
        range(10),  # ready
        range(4),  # booting
        [0, 2, 100],  # max creates per run
    )
    for (low, high), leases, refill, headroom, ready, booting, cap in grid:
        inp = sizing(
            min=low,
            max=high,
            leases=leases,
            refill=refill,
            headroom=headroom,
            ready=ready,
            booting=booting,
        )
        target, create, destroy = hot_plan(inp, max_creates=cap)
        assert low <= target <= high
        assert create == 0 or destroy == 0
        assert create <= cap
        assert destroy <= ready
        if destroy:
            assert ready - destroy == target
        if create < cap:
            assert ready + booting + create >= target


@pytest.mark.parametrize("headroom", [0.0, 0.3, 1.0])
def test_target_never_falls_as_demand_rises(headroom: float) -> None:
    targets = [hot_target(sizing(max=50, leases=n, headroom=headroom)) for n in range(200)]
    assert targets == sorted(targets)
