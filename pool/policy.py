"""Warm-pool sizing: how many machines one (template, region) should hold, and create backoff.

Pure decisions: the caller measures demand, boot time and the pool's contents and passes them in.
Nothing here reads a clock, Redis or the provider, so every rule is checked with a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# No operator setting may ask for more than this many machines of one (template, region): a typo
# in a bound should not become a provider bill.
HARD_MAX_POOL_SIZE = 1000


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(problem)


def _require_non_negative(name: str, value: float) -> None:
    _require(value >= 0 and math.isfinite(value), f"{name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True)
class PoolBounds:
    """The operator's limits for one (template, region): demand moves the target inside them."""

    min: int
    max: int

    def __post_init__(self) -> None:
        _require(self.min >= 0, f"pool min must be >= 0, got {self.min}")
        _require(self.min <= self.max, f"pool min {self.min} is above pool max {self.max}")
        cap = HARD_MAX_POOL_SIZE
        _require(self.max <= cap, f"pool max {self.max} is above the hard cap {cap}")


@dataclass(frozen=True)
class DemandSample:
    """Leases taken from the pool during the last `window_seconds`."""

    lease_count: int
    window_seconds: float

    def __post_init__(self) -> None:
        _require(self.lease_count >= 0, f"lease_count must be >= 0, got {self.lease_count}")
        window = self.window_seconds
        _require(0 < window < math.inf, f"window_seconds must be finite and > 0, got {window!r}")

    @property
    def rate(self) -> float:
        """Leases per second."""
        return self.lease_count / self.window_seconds


@dataclass(frozen=True)
class SizingInput:
    """What the policy sees of one (template, region) at one moment.

    `ready` machines can be leased now; `booting` ones were asked of the provider and are not up
    yet. `headroom` is the fraction added on top of the expected need (0.5 = 50% more), to absorb
    bursts that a mean rate hides.
    """

    bounds: PoolBounds
    demand: DemandSample
    refill_seconds: float
    headroom: float
    ready: int
    booting: int

    def __post_init__(self) -> None:
        _require_non_negative("refill_seconds", self.refill_seconds)
        _require_non_negative("headroom", self.headroom)
        _require(self.ready >= 0, f"ready must be >= 0, got {self.ready}")
        _require(self.booting >= 0, f"booting must be >= 0, got {self.booting}")


@dataclass(frozen=True)
class RefillPlan:
    """What one refill run should do: create some machines or destroy some ready ones, not both."""

    target: int
    create: int
    destroy: int

    def __post_init__(self) -> None:
        _require(self.create >= 0 and self.destroy >= 0, f"negative count in {self!r}")
        _require(self.create == 0 or self.destroy == 0, f"both creates and destroys in {self!r}")


def target_size(inp: SizingInput) -> int:
    """How many machines the pool should hold, ready or on their way.

    Little's law: the number of leases that arrive while one machine boots is rate x boot time,
    so that many must already be waiting or the next lease finds the pool empty. Headroom is
    added for bursts and the result is rounded up (half a machine serves nobody), then clamped
    to the operator's bounds.
    """
    in_flight = inp.demand.lease_count * inp.refill_seconds / inp.demand.window_seconds
    # Clamping before ceil keeps an absurd rate from overflowing it; rounding to 9 places keeps
    # float noise (50 x 1.1 = 55.00000000000001) from buying a whole extra machine.
    needed = min(in_flight * (1.0 + inp.headroom), inp.bounds.max)
    return max(inp.bounds.min, math.ceil(round(needed, 9)))


def plan_refill(inp: SizingInput, *, max_creates_per_run: int) -> RefillPlan:
    """Compare the target with supply and say how many machines to create or destroy.

    Booting machines count toward supply for creates: they will be ready within about one refill
    time, and creating for them again would overshoot on every run until they arrive. They never
    count for destroys: a boot can still fail, and only a machine that is ready now is surely
    surplus. `max_creates_per_run` keeps one run within the provider's rate limits; the next run
    creates the rest.
    """
    limit = max_creates_per_run
    _require(limit >= 0, f"max_creates_per_run must be >= 0, got {limit}")
    target = target_size(inp)
    missing = max(target - inp.ready - inp.booting, 0)
    surplus = max(inp.ready - target, 0)
    # missing > 0 means target > ready, so surplus is 0: the plan never both creates and destroys.
    return RefillPlan(target=target, create=min(missing, limit), destroy=surplus)


def backoff_delay(
    attempt: int, *, base: float, cap: float, jitter: float, rand: Callable[[], float]
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry) of a provider create.

    The ceiling doubles from `base` each attempt up to `cap`. A `jitter` fraction of it is
    randomised so that many failed creates do not retry in lockstep; jitter=1 is "full jitter"
    (anywhere in (0, ceiling]), jitter=0 is plain exponential backoff. `rand` returns a float in
    [0, 1) (`random.random` in production, a constant in tests).
    """
    _require(attempt >= 0, f"attempt must be >= 0, got {attempt}")
    _require(base > 0 and math.isfinite(base), f"base must be finite and > 0, got {base!r}")
    _require(cap >= base and math.isfinite(cap), f"cap must be finite and >= base, got {cap!r}")
    _require(0 <= jitter <= 1, f"jitter must be within [0, 1], got {jitter!r}")
    try:
        ceiling = min(cap, base * 2.0**attempt)
    except OverflowError:  # 2.0**attempt past ~1023 doublings: long since capped
        ceiling = cap
    r = rand()
    _require(0 <= r < 1, f"rand() must return a float in [0, 1), got {r!r}")
    return ceiling * (1.0 - jitter * r)
