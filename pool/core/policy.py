"""Warm-pool sizing: how many machines one (template, region) should hold, and create backoff.

Pure decisions: the caller measures demand, boot time and the pool's contents and passes them in.
Nothing here reads a clock, Redis or the provider, so every rule is checked with a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pool.core.states import TIERS, Tier

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


# -- tiers (docs/architecture.md, "Pool tiers") -------------------------------------------------


@dataclass(frozen=True)
class TierCounts:
    """A number of machines per tier."""

    hot: int = 0
    suspended: int = 0
    stopped: int = 0

    def __post_init__(self) -> None:
        _require(min(self.hot, self.suspended, self.stopped) >= 0, f"negative count in {self!r}")

    @classmethod
    def of(cls, counts: Mapping[Tier, int]) -> TierCounts:
        return cls(**{tier.value: counts.get(tier, 0) for tier in TIERS})

    def get(self, tier: Tier) -> int:
        value: int = getattr(self, tier.value)
        return value

    @property
    def total(self) -> int:
        return self.hot + self.suspended + self.stopped


NO_MACHINES = PoolBounds(0, 0)


@dataclass(frozen=True)
class TierBounds:
    """The operator's limits per tier. The lower tiers default to none at all, which makes the
    pool a hot-only pool exactly as before tiers existed."""

    hot: PoolBounds
    suspended: PoolBounds = NO_MACHINES
    stopped: PoolBounds = NO_MACHINES

    def of(self, tier: Tier) -> PoolBounds:
        bounds: PoolBounds = getattr(self, tier.value)
        return bounds


@dataclass(frozen=True)
class TierLatencies:
    """Seconds from a lease to a serving machine, per tier below hot (Fly's published figures:
    resume a suspended machine ~0.3 s, start a stopped one ~0.5 s), and `reaction`: how long the
    refill may take to notice that a tier ran low (its cron interval)."""

    resume: float = 0.3
    start: float = 0.5
    reaction: float = 5.0

    def __post_init__(self) -> None:
        for name in ("resume", "start", "reaction"):
            _require_non_negative(name, getattr(self, name))


@dataclass(frozen=True)
class TierCosts:
    """What one idle machine-second costs in each tier, relative to a started machine (1.0).
    A started machine pays CPU and RAM by the second; a stopped one only its root filesystem;
    a suspended one its root filesystem and its memory snapshot. The defaults are rounded up
    from Fly's published prices for a shared-cpu-1x with 1 GB RAM and a 2 GB root filesystem
    (0.053 and 0.079; docs/architecture.md, "Pool tiers: the cost model")."""

    hot: float = 1.0
    suspended: float = 0.10
    stopped: float = 0.06

    def __post_init__(self) -> None:
        for tier in TIERS:
            _require_non_negative(f"{tier.value} cost", self.of(tier))

    def of(self, tier: Tier) -> float:
        cost: float = getattr(self, tier.value)
        return cost

    def rate(self, counts: TierCounts) -> float:
        """Idle cost per second of holding `counts` (in started machine-seconds per second)."""
        return sum(counts.get(tier) * self.of(tier) for tier in TIERS)


FLY_LATENCIES = TierLatencies()
DEFAULT_COSTS = TierCosts()


@dataclass(frozen=True)
class TierInput:
    """What the tier policy sees of one (template, region).

    `ready` machines wait in each tier now; `arriving` ones are on their way into a tier
    (booting machines into hot, moving ones into their destination). `refill_seconds` is the
    time to make a new machine (create and boot); `tiers` are the tiers the provider can keep
    (pool.core.provider.pool_tiers): a tier it cannot keep gets no machines.
    """

    bounds: TierBounds
    demand: DemandSample
    refill_seconds: float
    headroom: float
    ready: TierCounts
    arriving: TierCounts = TierCounts()
    latencies: TierLatencies = FLY_LATENCIES
    tiers: frozenset[Tier] = frozenset(TIERS)
    costs: TierCosts = DEFAULT_COSTS

    def __post_init__(self) -> None:
        _require_non_negative("refill_seconds", self.refill_seconds)
        _require_non_negative("headroom", self.headroom)
        _require(Tier.HOT in self.tiers, "every pool keeps the hot tier")

    def bounds_of(self, tier: Tier) -> PoolBounds:
        return self.bounds.of(tier) if tier in self.tiers else NO_MACHINES


@dataclass(frozen=True)
class Move:
    """Move `count` ready machines from one tier to another (suspend, stop, resume or start
    them)."""

    source: Tier
    target: Tier
    count: int

    def __post_init__(self) -> None:
        _require(self.count > 0 and self.source is not self.target, f"bad move {self!r}")


@dataclass(frozen=True)
class TierPlan:
    """One refill run: create machines (they boot into hot), move ready machines between tiers,
    destroy surplus ready machines. Never both creates and destroys."""

    targets: TierCounts
    create: int
    moves: tuple[Move, ...]
    destroy: TierCounts

    def __post_init__(self) -> None:
        _require(self.create >= 0, f"negative create in {self!r}")
        _require(self.create == 0 or self.destroy.total == 0, f"creates and destroys in {self!r}")

    @property
    def target(self) -> int:
        return self.targets.total


def _in_flight(inp: TierInput, seconds: float) -> int:
    """Leases expected within `seconds`, with headroom, rounded up (Little's law)."""
    # Clamped before ceil (an absurd rate must not overflow it); rounded to 9 places so float
    # noise (50 x 1.1 = 55.00000000000001) does not buy a whole machine.
    needed = min(inp.demand.rate * seconds * (1.0 + inp.headroom), 3.0 * HARD_MAX_POOL_SIZE)
    return math.ceil(round(needed, 9))


def tier_targets(inp: TierInput) -> TierCounts:
    """How many machines each tier should hold, ready or on their way.

    Each tier is refilled from the one below it, so it must cover the leases that arrive while
    that refill happens (Little's law: leases per second x seconds), counted cumulatively:

        hot                        >= leases within reaction + resume   (refilled by resuming)
        hot + suspended            >= leases within reaction + start    (refilled by starting)
        hot + suspended + stopped  >= leases within refill_seconds      (refilled by creating)

    Each window is capped at refill_seconds: no tier needs to cover more than a create does.
    A requirement a tier cannot meet (its max, or a tier the provider cannot keep) moves up to
    the faster, dearer tiers; what the last line asks beyond the first two goes to the cheapest
    tier with room (stopped on Fly). Operator minimums hold in every tier. With no lower tiers
    the hot target is clamp(ceil(rate x refill_seconds x (1 + headroom)), min, max).
    """
    lat, create = inp.latencies, inp.refill_seconds
    need_hot = _in_flight(inp, min(create, lat.reaction + lat.resume))
    need_warm = _in_flight(inp, min(create, lat.reaction + lat.start))
    need_all = _in_flight(inp, create)
    hot_bounds = inp.bounds_of(Tier.HOT)

    def clamp(value: int, bounds: PoolBounds) -> int:
        return max(bounds.min, min(value, bounds.max))

    hot = clamp(need_hot, hot_bounds)
    suspended = clamp(need_warm - hot, inp.bounds_of(Tier.SUSPENDED))
    hot = clamp(max(hot, need_warm - suspended), hot_bounds)
    counts = {Tier.HOT: hot, Tier.SUSPENDED: suspended}
    counts[Tier.STOPPED] = inp.bounds_of(Tier.STOPPED).min
    shortfall = need_all - sum(counts.values())
    for tier in sorted(TIERS, key=lambda t: (inp.costs.of(t), TIERS.index(t))):
        if shortfall <= 0:
            break
        added = min(shortfall, max(inp.bounds_of(tier).max - counts[tier], 0))
        counts[tier] += added
        shortfall -= added
    return TierCounts.of(counts)


# Where a deficit in one tier is filled from another tier's surplus, best first: the hot tier
# resumes a suspended machine before it starts a stopped one; the lower tiers take a surplus
# hot machine (the dearest to keep idle) before anything else.
_SOURCES: dict[Tier, tuple[Tier, ...]] = {
    Tier.HOT: (Tier.SUSPENDED, Tier.STOPPED),
    Tier.SUSPENDED: (Tier.HOT, Tier.STOPPED),
    Tier.STOPPED: (Tier.HOT, Tier.SUSPENDED),
}


def reservoir(inp: TierInput) -> Tier | None:
    """The tier that keeps surplus machines instead of destroying them, up to its max: the
    cheapest tier the pool may hold whose idle machine costs less than a started one (stopped,
    on Fly). None for a hot-only pool, whose surplus is destroyed as before tiers existed.

    Why keep them: a stopped machine costs ~5 % of a started one, so keeping one idle for
    a few minutes costs less than the boot (and the rate-limited create) that replacing it
    later would, and a lease served from it waits ~0.5 s instead of ~10 s."""
    cheap = [t for t in inp.tiers if inp.bounds_of(t).max > 0 and inp.costs.of(t) < inp.costs.hot]
    return min(cheap, key=lambda t: (inp.costs.of(t), TIERS.index(t))) if cheap else None


def plan_tiers(inp: TierInput, *, max_creates_per_run: int, max_moves_per_run: int) -> TierPlan:
    """Compare each tier's target with its supply and say what one refill run does.

    1. A tier short of its target takes another tier's surplus ready machines (_SOURCES).
    2. A faster tier still short takes ready machines from the slower tiers even when they have
       no surplus (hot resumes a suspended machine, suspended starts a stopped one): the slow
       tier is cheaper to refill, by the creates below.
    3. Creates make up the whole pool's shortfall; new machines boot into hot, and a later run
       moves any surplus down.
    4. Surplus of the dearer tiers sinks into the reservoir tier (reservoir()), which keeps
       machines up to its max rather than its target.
    5. What is still surplus (beyond the reservoir's max, or with no reservoir) is destroyed,
       but only once no tier is short and the reservoir has no room left: a surplus that a
       move could use is kept for the next run (moves per run are capped).

    Arriving machines count as supply against creates and moves into their tier: they will be
    there within about one refill, and asking again would overshoot on every run until they
    arrive. They never count as surplus to move or destroy: a boot or a move can still fail.
    """
    _require(
        max_creates_per_run >= 0, f"max_creates_per_run must be >= 0, got {max_creates_per_run}"
    )
    _require(max_moves_per_run >= 0, f"max_moves_per_run must be >= 0, got {max_moves_per_run}")
    targets = tier_targets(inp)
    ready = {t: inp.ready.get(t) for t in TIERS}
    have = {t: ready[t] + inp.arriving.get(t) for t in TIERS}
    deficit = {t: max(targets.get(t) - have[t], 0) for t in TIERS}
    spare = {t: max(ready[t] - targets.get(t), 0) for t in TIERS}
    create = min(max(targets.total - sum(have.values()), 0), max_creates_per_run)
    moves: dict[tuple[Tier, Tier], int] = {}
    budget = max_moves_per_run

    def move(source: Tier, target: Tier, wanted: int) -> int:
        nonlocal budget
        count = min(wanted, ready[source], budget)
        if count <= 0:
            return 0
        moves[(source, target)] = moves.get((source, target), 0) + count
        ready[source] -= count
        have[source] -= count
        have[target] += count
        budget -= count
        deficit[target] -= count
        spare[source] = max(spare[source] - count, 0)
        return count

    for target in TIERS:
        for source in _SOURCES[target]:
            move(source, target, min(deficit[target], spare[source]))
    for target in (Tier.HOT, Tier.SUSPENDED):
        for source in TIERS[TIERS.index(target) + 1 :]:
            deficit[source] += move(source, target, deficit[target])
    keep = reservoir(inp)
    room = 0
    if keep is not None:
        for source in TIERS:
            if source is not keep:
                room = max(inp.bounds_of(keep).max - have[keep], 0)
                move(source, keep, min(spare[source], room))
        room = max(inp.bounds_of(keep).max - have[keep], 0)
        # The reservoir's own surplus is what exceeds its max (only ready machines go).
        spare[keep] = min(max(have[keep] - inp.bounds_of(keep).max, 0), ready[keep])
    short = any(deficit[t] > 0 for t in TIERS)
    destroy = TierCounts.of(
        {t: 0 if short or (room and t is not keep) else spare[t] for t in TIERS}
    )
    return TierPlan(
        targets=targets,
        create=create,
        moves=tuple(Move(s, t, n) for (s, t), n in moves.items()),
        destroy=destroy,
    )


def place_recycled(inp: TierInput) -> Tier | None:
    """The tier a freshly reset machine should join: the fastest tier short of its target;
    if none is, the cheapest tier with ready machines below its max; None when every tier is
    full (destroy it). With no lower tiers: hot while the hot tier is below its max."""
    targets = tier_targets(inp)
    for tier in TIERS:
        if tier in inp.tiers and inp.ready.get(tier) + inp.arriving.get(tier) < targets.get(tier):
            return tier
    for tier in sorted(inp.tiers, key=lambda t: (inp.costs.of(t), TIERS.index(t))):
        if inp.ready.get(tier) < inp.bounds_of(tier).max:
            return tier
    return None
