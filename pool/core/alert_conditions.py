"""The alert rules (pool.core.alert_rules) judged in Python, for deployments without Prometheus.

An evaluation sees `Figures`: cumulative counters (series named by `series`: what each process
published from its metrics registry, and the pool's lease stats from Redis), the hot tier's
ready machines per pool, the newest worker heartbeat and whether each store answered. A
counter's increase over a rule's window is the newest figures minus the oldest kept ones inside
the window, series by series, a drop counting as a restart from zero (Prometheus's `increase`
without its extrapolation). Each rule yields the `Observation`s whose condition holds now;
`advance` turns one instance's observation (or its absence) into its next state, honouring the
rule's `for:` the way Prometheus does: pending first, firing once it has held that long.

Pure: no I/O, the clock comes in with the figures.
"""

from __future__ import annotations

import enum
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pool.core.alert_rules import (
    EDIT_APPLIED_P99_HIGH,
    HIT_RATIO_LOW,
    LEASE_P99_HIGH,
    ORPHANS_FOUND,
    POOL_EXHAUSTED,
    PROVIDER_ERRORS,
    STORE_DOWN,
    WORKER_HEARTBEAT_STALE,
    Rule,
    Severity,
)

# Series kinds (the first part of a series id).
LEASES = "lease"  # lease|{process}|{template}|{region}|{outcome}: preview_lease_total
LEASE_BUCKET = "lease_le"  # lease_le|{process}|{template}|{region}|{le}: cumulative buckets
APPLIED_BUCKET = "applied_le"  # applied_le|{process}|{le}: preview_edit_applied_seconds
PROVIDER_ERRORS_SERIES = "provider_errors"  # provider_errors|{process}|{provider}|{kind}
ORPHANS = "orphans"  # orphans|{process}: preview_reconcile_orphans_destroyed_total
POOL_STATS = "stats"  # stats|{template}|{region}|{hits|misses}: Redis' stats:{pool} hash

_SEP = "|"
HITS_FIELD, MISSES_FIELD = "hits", "misses"


def series(kind: str, *parts: str) -> str:
    if any(_SEP in part for part in parts):
        raise ValueError(f"a series part may not hold {_SEP!r}: {parts}")
    return _SEP.join((kind, *parts))


def _split(series_id: str) -> list[str]:
    return series_id.split(_SEP)


@dataclass(frozen=True)
class Figures:
    """What one evaluation sees, at `at` (Unix seconds)."""

    at: float
    counters: Mapping[str, float] = field(default_factory=dict)
    hot_ready: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (template, region)
    heartbeat: float | None = None  # the newest worker tick; None: no worker has published
    stores_up: Mapping[str, bool] = field(default_factory=dict)


Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Observation:
    """A rule's condition holding for one instance (its labels), with the value it compared."""

    rule: Rule
    labels: Labels
    value: float

    @property
    def key(self) -> str:
        return self.rule.name + "".join(f"{_SEP}{k}={v}" for k, v in self.labels)

    def summary(self) -> str:
        return render_summary(self.rule.summary, dict(self.labels), self.value)


_TEMPLATE = re.compile(r"{{\s*\$(labels\.(\w+)|value)(\s*\|\s*(\w+))?\s*}}")


def render_summary(text: str, labels: Mapping[str, str], value: float) -> str:
    """The rule's summary with Prometheus's `{{ $labels.x }}` and `{{ $value | fn }}` filled
    in (humanize: 4 significant digits; humanizePercentage: a ratio as a percentage)."""

    def fill(match: re.Match[str]) -> str:
        if match.group(2):
            return labels.get(match.group(2), "")
        if match.group(4) == "humanizePercentage":
            return f"{value * 100:.4g}%"
        return f"{value:.4g}"

    return _TEMPLATE.sub(fill, text)


# -- windows ------------------------------------------------------------------------------


def window_base(history: Sequence[Figures], now: Figures, window_seconds: int) -> Figures:
    """The oldest figures kept within `window_seconds` before `now` (`now` itself if none)."""
    start = now.at - window_seconds
    within = (figures for figures in history if start <= figures.at < now.at)
    return min(within, key=lambda f: f.at, default=now)


def increases(
    base: Figures, now: Figures, kind: str, group: Callable[[list[str]], tuple[str, ...]]
) -> dict[tuple[str, ...], float]:
    """The increase of every `kind` series from `base` to `now`, summed by `group` (given the
    series' parts after the kind). A series missing from `base` started inside the window."""
    summed: dict[tuple[str, ...], float] = defaultdict(float)
    for series_id, value in now.counters.items():
        parts = _split(series_id)
        if parts[0] != kind:
            continue
        before = base.counters.get(series_id, 0.0)
        summed[group(parts[1:])] += value - before if value >= before else value
    return dict(summed)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """Prometheus's histogram_quantile over cumulative bucket counts by upper bound (`inf` the
    last): linear within the bucket the rank falls in; NaN without observations."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return math.nan
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # the top bucket has no width: its lower bound, as Prometheus
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


# -- the rules ----------------------------------------------------------------------------


def _pool_labels(pool: tuple[str, ...]) -> Labels:
    return (("template", pool[0]), ("region", pool[1]))


def pool_exhausted(history: Sequence[Figures], now: Figures) -> list[Observation]:
    rule = POOL_EXHAUSTED
    base = window_base(history, now, rule.window_seconds)
    # Leases answered 503 (the web's counters); leases that reached the pool (Redis' stats:
    # hits and misses of every tier).
    by_outcome = increases(base, now, LEASES, lambda p: (p[1], p[2], p[3]))
    exhausted: dict[tuple[str, ...], float] = defaultdict(float)
    for (template, region, outcome), count in by_outcome.items():
        if outcome == "exhausted":
            exhausted[(template, region)] += count
    attempts = increases(base, now, POOL_STATS, lambda p: (p[0], p[1]))
    found: list[Observation] = []
    pools = set(exhausted) | set(attempts)
    for pool in sorted(pools):
        count = exhausted.get(pool, 0.0)
        if count > rule.threshold:
            found.append(Observation(rule, _pool_labels(pool), count))
        elif now.hot_ready.get((pool[0], pool[1]), 0) == 0 and attempts.get(pool, 0) > 0:
            found.append(Observation(rule, _pool_labels(pool), 0))
    return found


def hit_ratio_low(history: Sequence[Figures], now: Figures) -> list[Observation]:
    rule = HIT_RATIO_LOW
    base = window_base(history, now, rule.window_seconds)
    by_field = increases(base, now, POOL_STATS, lambda p: (p[0], p[1], p[2]))
    found = []
    pools = sorted({(p[0], p[1]) for p in by_field})
    for pool in pools:
        hits = by_field.get((*pool, HITS_FIELD), 0.0)
        attempts = hits + by_field.get((*pool, MISSES_FIELD), 0.0)
        if attempts >= rule.min_traffic and attempts > 0 and hits / attempts < rule.threshold:
            found.append(Observation(rule, _pool_labels(pool), hits / attempts))
    return found


def _quantiles(
    rule: Rule, history: Sequence[Figures], now: Figures, kind: str, labels: Sequence[str]
) -> list[Observation]:
    """p99 of a bucketed series by `labels` (the parts after the process, before `le`)."""
    base = window_base(history, now, rule.window_seconds)
    width = len(labels)
    deltas = increases(base, now, kind, lambda p: tuple(p[1 : 2 + width]))
    grouped: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for parts, value in deltas.items():
        grouped[parts[:width]][float(parts[width])] = value
    found = []
    for group, buckets in sorted(grouped.items()):
        value = histogram_quantile(0.99, buckets)
        if not math.isnan(value) and value > rule.threshold:
            found.append(Observation(rule, tuple(zip(labels, group, strict=True)), value))
    return found


def lease_p99_high(history: Sequence[Figures], now: Figures) -> list[Observation]:
    return _quantiles(LEASE_P99_HIGH, history, now, LEASE_BUCKET, ("template", "region"))


def edit_applied_p99_high(history: Sequence[Figures], now: Figures) -> list[Observation]:
    return _quantiles(EDIT_APPLIED_P99_HIGH, history, now, APPLIED_BUCKET, ())


def provider_errors(history: Sequence[Figures], now: Figures) -> list[Observation]:
    rule = PROVIDER_ERRORS
    base = window_base(history, now, rule.window_seconds)
    by_provider = increases(base, now, PROVIDER_ERRORS_SERIES, lambda p: (p[1],))
    return [
        Observation(rule, (("provider", provider),), count)
        for (provider,), count in sorted(by_provider.items())
        if count > rule.threshold
    ]


def orphans_found(history: Sequence[Figures], now: Figures) -> list[Observation]:
    rule = ORPHANS_FOUND
    base = window_base(history, now, rule.window_seconds)
    count = sum(increases(base, now, ORPHANS, lambda p: ()).values())
    return [Observation(rule, (), count)] if count > rule.threshold else []


def worker_heartbeat_stale(history: Sequence[Figures], now: Figures) -> list[Observation]:
    del history
    rule = WORKER_HEARTBEAT_STALE
    if now.heartbeat is None:
        return [Observation(rule, (), math.inf)]
    age = now.at - now.heartbeat
    return [Observation(rule, (), age)] if age > rule.threshold else []


def store_down(history: Sequence[Figures], now: Figures) -> list[Observation]:
    del history
    return [
        Observation(STORE_DOWN, (("store", store),), 0)
        for store, up in sorted(now.stores_up.items())
        if not up
    ]


CONDITIONS: dict[str, Callable[[Sequence[Figures], Figures], list[Observation]]] = {
    POOL_EXHAUSTED.name: pool_exhausted,
    HIT_RATIO_LOW.name: hit_ratio_low,
    LEASE_P99_HIGH.name: lease_p99_high,
    EDIT_APPLIED_P99_HIGH.name: edit_applied_p99_high,
    PROVIDER_ERRORS.name: provider_errors,
    ORPHANS_FOUND.name: orphans_found,
    WORKER_HEARTBEAT_STALE.name: worker_heartbeat_stale,
    STORE_DOWN.name: store_down,
}


def observe(history: Sequence[Figures], now: Figures) -> list[Observation]:
    """Every rule's instances whose condition holds at `now`."""
    return [obs for condition in CONDITIONS.values() for obs in condition(history, now)]


# -- one instance's state -----------------------------------------------------------------


class Phase(enum.StrEnum):
    PENDING = "pending"  # the condition holds, not yet for the rule's `for:`
    FIRING = "firing"


class Transition(enum.StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertState:
    key: str
    name: str
    severity: Severity
    summary: str
    phase: Phase
    since: float  # the condition first held (pending) or the alert fired (firing)


class IllegalAlertMove(RuntimeError):
    pass


def advance(
    state: AlertState | None, observation: Observation | None, now: float
) -> tuple[AlertState | None, Transition | None]:
    """One instance's next state and what happened: FIRED once its condition has held for the
    rule's `for:`, RESOLVED when a firing one's condition is gone; a pending one whose
    condition goes away is forgotten without a word."""
    if state is not None and observation is not None and state.key != observation.key:
        raise IllegalAlertMove(f"{observation.key} cannot move the state of {state.key}")
    if observation is None:
        if state is None or state.phase is Phase.PENDING:
            return None, None
        return None, Transition.RESOLVED
    summary = observation.summary()
    if state is None:
        state = AlertState(
            observation.key,
            observation.rule.name,
            observation.rule.severity,
            summary,
            Phase.PENDING,
            now,
        )
    if state.phase is Phase.FIRING:
        return replace(state, summary=summary), None
    if now - state.since >= observation.rule.for_seconds:
        return replace(state, summary=summary, phase=Phase.FIRING, since=now), Transition.FIRED
    return replace(state, summary=summary), None


def advance_all(
    states: Mapping[str, AlertState], observations: Iterable[Observation], now: float
) -> tuple[dict[str, AlertState], list[tuple[AlertState, Transition]]]:
    """Every instance's next state, and the transitions to announce (with the state that
    fired, or the one that was firing when it resolved)."""
    seen = {obs.key: obs for obs in observations}
    next_states: dict[str, AlertState] = {}
    moves: list[tuple[AlertState, Transition]] = []
    for key in sorted(set(states) | set(seen)):
        old = states.get(key)
        new, move = advance(old, seen.get(key), now)
        if new is not None:
            next_states[key] = new
        if move is Transition.FIRED and new is not None:
            moves.append((new, move))
        elif move is Transition.RESOLVED and old is not None:
            moves.append((old, move))
    return next_states, moves
