"""The tier policy (pool.core.policy: tier_targets, plan_tiers, place_recycled) as tables.

Conventions of the tables: demand is `rate` leases per second over a 60 s window, a new machine
takes `refill` = 15 s, and unless a case says otherwise the latencies are Fly's (resume 0.3 s,
start 0.5 s) with a 5 s reaction, so the three coverage windows are 5.3 s, 5.5 s and 15 s.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from pool.core.policy import (
    DemandSample,
    Move,
    PoolBounds,
    TierBounds,
    TierCosts,
    TierCounts,
    TierInput,
    TierLatencies,
    TierPlan,
    place_recycled,
    plan_tiers,
    tier_targets,
)
from pool.core.states import Tier

H, S, T = Tier.HOT, Tier.SUSPENDED, Tier.STOPPED
ALL = frozenset(Tier)
WIDE = PoolBounds(0, 100)
NONE = PoolBounds(0, 0)


def tiers(
    *,
    rate: float = 0.0,
    hot: PoolBounds = WIDE,
    suspended: PoolBounds = WIDE,
    stopped: PoolBounds = WIDE,
    refill: float = 15.0,
    headroom: float = 0.0,
    ready: tuple[int, int, int] = (0, 0, 0),
    arriving: tuple[int, int, int] = (0, 0, 0),
    latencies: TierLatencies | None = None,
    supported: frozenset[Tier] = ALL,
    costs: TierCosts | None = None,
) -> TierInput:
    return TierInput(
        bounds=TierBounds(hot, suspended, stopped),
        demand=DemandSample(lease_count=round(rate * 60), window_seconds=60.0),
        refill_seconds=refill,
        headroom=headroom,
        ready=TierCounts(*ready),
        arriving=TierCounts(*arriving),
        latencies=latencies or TierLatencies(),
        tiers=supported,
        costs=costs or TierCosts(),
    )


def pinned(hot: int, suspended: int, stopped: int, **kwargs: object) -> TierInput:
    """No demand and min == max in every tier: the targets are exactly these."""
    return tiers(
        hot=PoolBounds(hot, hot),
        suspended=PoolBounds(suspended, suspended),
        stopped=PoolBounds(stopped, stopped),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("inp", "expected"),
    [
        pytest.param(tiers(), (0, 0, 0), id="no demand, no minimums: empty"),
        # 1/s: 5.3 leases within a resume window, 5.5 within a start, 15 within a create.
        pytest.param(tiers(rate=1.0), (6, 0, 9), id="hot covers the resume window, rest stopped"),
        pytest.param(tiers(rate=1.0, headroom=0.5), (8, 1, 14), id="headroom scales every window"),
        pytest.param(
            tiers(rate=10.0, refill=10.0, latencies=TierLatencies(reaction=0.0)),
            (3, 2, 95),
            id="no reaction: hot 0.3 s, suspended 0.2 s more, stopped the rest",
        ),
        pytest.param(
            tiers(rate=10.0, refill=10.0, suspended=NONE, latencies=TierLatencies(reaction=0.0)),
            (5, 0, 95),
            id="no suspended tier: hot covers the start window too",
        ),
        pytest.param(
            tiers(rate=1.0, stopped=PoolBounds(0, 4)),
            (6, 5, 4),
            id="stopped at max: the rest goes to the next cheapest tier",
        ),
        pytest.param(
            tiers(rate=1.0, suspended=PoolBounds(0, 2), stopped=PoolBounds(0, 4)),
            (9, 2, 4),
            id="both lower tiers full: the rest moves up to hot",
        ),
        pytest.param(
            tiers(rate=1.0, hot=PoolBounds(0, 4)),
            (4, 2, 9),
            id="hot at max: the resume window spills into suspended",
        ),
        pytest.param(
            tiers(hot=PoolBounds(1, 5), suspended=PoolBounds(2, 4), stopped=PoolBounds(10, 20)),
            (1, 2, 10),
            id="operator minimums hold with no demand",
        ),
        pytest.param(
            tiers(rate=1.0, supported=frozenset({H})),
            (15, 0, 0),
            id="a provider without suspend keeps hot only (Little's law as before)",
        ),
        pytest.param(
            tiers(rate=1.0, costs=TierCosts(hot=1.0, suspended=0.05, stopped=0.1)),
            (6, 9, 0),
            id="the rest goes to the cheaper tier, whichever it is",
        ),
        pytest.param(
            tiers(rate=1.0, refill=4.0),
            (4, 0, 0),
            id="windows cap at a create: nothing is left for the lower tiers",
        ),
        pytest.param(
            tiers(rate=10**6, hot=PoolBounds(0, 1000), refill=1e6),
            (1000, 100, 100),
            id="absurd demand clamps every tier at its max",
        ),
    ],
)
def test_tier_targets(inp: TierInput, expected: tuple[int, int, int]) -> None:
    assert tier_targets(inp) == TierCounts(*expected)


@pytest.mark.parametrize(
    ("rate", "low", "high", "refill", "headroom"),
    list(
        itertools.product(
            [0.0, 0.05, 0.1, 1.0, 7.3], [0, 2, 5], [5, 10, 40], [0.0, 5, 30], [0, 0.5]
        )
    ),
)
def test_without_lower_tiers_the_hot_target_is_littles_law(
    rate: float, low: int, high: int, refill: float, headroom: float
) -> None:
    """Lower-tier bounds of 0/0, or a provider without them: the hot tier alone covers a whole
    create, clamp(ceil(rate x refill x (1 + headroom)), min, max), computed here exactly."""
    bounds = PoolBounds(low, high)
    leases = Fraction(round(rate * 60), 60) * Fraction(refill) * (1 + Fraction(headroom))
    expected = max(low, min(math.ceil(leases), high))
    for inp in (
        tiers(
            rate=rate, hot=bounds, suspended=NONE, stopped=NONE, refill=refill, headroom=headroom
        ),
        tiers(rate=rate, hot=bounds, refill=refill, headroom=headroom, supported=frozenset({H})),
    ):
        assert tier_targets(inp) == TierCounts(expected, 0, 0)


def plan(
    creates: int = 0,
    moves: tuple[Move, ...] = (),
    destroy: tuple[int, int, int] = (0, 0, 0),
    targets: tuple[int, int, int] = (2, 1, 3),
) -> TierPlan:
    return TierPlan(TierCounts(*targets), creates, moves, TierCounts(*destroy))


@pytest.mark.parametrize(
    ("inp", "max_moves", "expected"),
    [
        pytest.param(pinned(2, 1, 3), 8, plan(creates=6), id="empty pool: creates boot to hot"),
        pytest.param(
            pinned(2, 1, 3, ready=(6, 0, 0)),
            8,
            plan(moves=(Move(H, S, 1), Move(H, T, 3))),
            id="surplus hot moves down into the lower tiers",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(2, 1, 3)), 8, plan(), id="every tier at target: nothing"
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(1, 1, 3)),
            8,
            plan(creates=1, moves=(Move(S, H, 1), Move(T, S, 1))),
            id="a lease took a hot machine: resume one, start one, create one",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(1, 0, 3)),
            8,
            plan(creates=2, moves=(Move(T, H, 1), Move(T, S, 1))),
            id="no suspended machine: hot and suspended start stopped ones",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(4, 1, 1)),
            8,
            plan(moves=(Move(H, T, 2),)),
            id="hot surplus fills the stopped deficit",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(2, 3, 2)),
            8,
            plan(moves=(Move(S, T, 1),), destroy=(0, 1, 0)),
            id="suspended surplus: stop one for the deficit, destroy the other",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(3, 1, 3)),
            8,
            plan(destroy=(1, 0, 0)),
            id="surplus with no deficit anywhere is destroyed",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(6, 0, 0)),
            1,
            plan(moves=(Move(H, S, 1),)),
            id="moves capped per run: the surplus waits for the next run, not destroyed",
        ),
        pytest.param(
            pinned(2, 1, 3, arriving=(6, 0, 0)),
            8,
            plan(),
            id="booting machines count against creates and moves",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(2, 0, 0), arriving=(0, 1, 3)),
            8,
            plan(),
            id="machines moving into a tier count for it",
        ),
        pytest.param(
            pinned(2, 1, 3, ready=(0, 0, 0), arriving=(0, 1, 0)),
            8,
            plan(creates=5),
            id="creates cover the whole shortfall",
        ),
        pytest.param(
            tiers(
                hot=PoolBounds(2, 2),
                suspended=PoolBounds(1, 1),
                stopped=PoolBounds(3, 10),
                ready=(4, 1, 3),
            ),
            8,
            plan(moves=(Move(H, T, 2),)),
            id="surplus sinks into the stopped reservoir up to its max, not destroyed",
        ),
        pytest.param(
            tiers(
                hot=PoolBounds(2, 2),
                suspended=PoolBounds(1, 1),
                stopped=PoolBounds(3, 10),
                ready=(2, 3, 12),
            ),
            8,
            plan(destroy=(0, 2, 2)),
            id="beyond the reservoir's max surplus is destroyed",
        ),
        pytest.param(
            tiers(
                hot=PoolBounds(2, 2),
                suspended=PoolBounds(1, 1),
                stopped=PoolBounds(3, 10),
                ready=(6, 1, 3),
            ),
            2,
            plan(moves=(Move(H, T, 2),)),
            id="surplus the reservoir could take waits for the next run's moves",
        ),
        pytest.param(
            pinned(2, 0, 0, ready=(0, 2, 3), supported=frozenset({H})),
            8,
            plan(
                moves=(Move(S, H, 2),),
                destroy=(0, 0, 3),
                targets=(2, 0, 0),
            ),
            id="a tier the provider cannot keep is emptied into hot, the rest destroyed",
        ),
    ],
)
def test_plan_tiers(inp: TierInput, max_moves: int, expected: TierPlan) -> None:
    assert plan_tiers(inp, max_creates_per_run=10, max_moves_per_run=max_moves) == expected


@pytest.mark.parametrize(
    ("target", "ready", "booting", "cap"),
    [
        (5, 0, 0, 10),
        (5, 1, 3, 10),
        (5, 0, 5, 10),
        (5, 5, 0, 10),
        (2, 5, 0, 10),
        (2, 5, 4, 10),
        (5, 2, 6, 10),
        (0, 3, 0, 10),
        (10, 0, 0, 3),
        (10, 8, 0, 3),
        (10, 0, 0, 0),
    ],
)
def test_lower_tier_bounds_of_zero_plan_as_a_hot_only_provider(
    target: int, ready: int, booting: int, cap: int
) -> None:
    """A pool whose operator set no lower-tier bounds plans exactly as one whose provider
    cannot suspend (test_policy.py pins the hot-only plans themselves)."""
    bounds, have, coming = PoolBounds(target, target), (ready, 0, 0), (booting, 0, 0)
    zero_bounds = tiers(hot=bounds, suspended=NONE, stopped=NONE, ready=have, arriving=coming)
    hot_only = tiers(hot=bounds, supported=frozenset({H}), ready=have, arriving=coming)
    zero_bounds_plan, hot_only_plan = (
        plan_tiers(inp, max_creates_per_run=cap, max_moves_per_run=8)
        for inp in (zero_bounds, hot_only)
    )
    assert zero_bounds_plan == hot_only_plan
    assert zero_bounds_plan.moves == ()
    assert zero_bounds_plan.destroy.total == zero_bounds_plan.destroy.hot


@pytest.mark.parametrize(
    ("inp", "expected"),
    [
        pytest.param(pinned(2, 1, 3, ready=(1, 0, 0)), H, id="hot short: hot"),
        pytest.param(pinned(2, 1, 3, ready=(2, 0, 0)), S, id="hot full, suspended short"),
        pytest.param(pinned(2, 1, 3, ready=(2, 1, 2)), T, id="only stopped short"),
        pytest.param(
            tiers(
                hot=PoolBounds(2, 4),
                suspended=PoolBounds(1, 2),
                stopped=PoolBounds(3, 6),
                ready=(2, 1, 3),
            ),
            T,
            id="none short: the cheapest tier with room",
        ),
        pytest.param(pinned(2, 1, 3, ready=(2, 1, 3)), None, id="every tier full: destroy"),
        pytest.param(
            pinned(2, 1, 3, ready=(1, 0, 0), arriving=(1, 0, 0)),
            S,
            id="a booting machine already covers hot",
        ),
        pytest.param(
            tiers(hot=PoolBounds(2, 4), suspended=NONE, stopped=NONE, ready=(3, 0, 0)),
            H,
            id="hot only: kept below the max",
        ),
        pytest.param(
            tiers(hot=PoolBounds(2, 4), suspended=NONE, stopped=NONE, ready=(4, 0, 0)),
            None,
            id="hot only: destroyed at the max",
        ),
    ],
)
def test_place_recycled(inp: TierInput, expected: Tier | None) -> None:
    assert place_recycled(inp) is expected


def test_idle_cost_rate_weights_each_tier() -> None:
    costs = TierCosts()
    assert costs.rate(TierCounts(2, 10, 20)) == pytest.approx(2 + 10 * 0.10 + 20 * 0.06)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TierCounts(-1, 0, 0),
        lambda: Move(H, H, 1),
        lambda: Move(H, S, 0),
        lambda: TierPlan(TierCounts(), 1, (), TierCounts(1, 0, 0)),
        lambda: TierLatencies(resume=-1.0),
        lambda: TierCosts(stopped=float("nan")),
        lambda: tiers(supported=frozenset({S, T})),
    ],
)
def test_invalid_tier_values_raise(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
