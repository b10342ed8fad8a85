"""The alert rules judged in Python (pool.core.alert_conditions): the same answers as promtool
gives for the cases of ops/prometheus/alerts_test.yml, and the pending/firing/resolved moves."""

from __future__ import annotations

import math

import pytest

from pool.core.alert_conditions import (
    APPLIED_BUCKET,
    LEASE_BUCKET,
    LEASES,
    ORPHANS,
    POOL_STATS,
    PROVIDER_ERRORS_SERIES,
    AlertState,
    Figures,
    IllegalAlertMove,
    Observation,
    Phase,
    Transition,
    advance,
    advance_all,
    histogram_quantile,
    increases,
    observe,
    render_summary,
    series,
)
from pool.core.alert_rules import (
    HIT_RATIO_LOW,
    ORPHANS_FOUND,
    POOL_EXHAUSTED,
    STORE_DOWN,
    duration,
)
from pool.core.exposition import ExpositionError, parse_exposition
from pool.core.prometheus import Registry


def figures(
    at: float,
    counters: dict[str, float],
    *,
    hot_ready: dict[tuple[str, str], int] | None = None,
    heartbeat: float | None = None,
    stores_up: dict[str, bool] | None = None,
) -> Figures:
    """Figures with a live worker (heartbeat now) and both stores up unless told otherwise."""
    return Figures(
        at,
        counters,
        hot_ready or {},
        at if heartbeat is None else heartbeat,
        stores_up or {"redis": True, "postgres": True},
    )


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        # promtool's answers for the alerts_test.yml cases (summary "4.975s", "2.485s").
        ({1: 0, 2.5: 0, 5: 100, math.inf: 100}, 4.975),
        ({0.5: 0, 1: 0, 2.5: 100, math.inf: 100}, 2.485),
        ({0.05: 100, math.inf: 100}, 0.0495),
        ({1: 50, math.inf: 100}, 1.0),  # the rank in the top bucket: its lower bound
        ({1: 0, math.inf: 0}, math.nan),  # nothing observed
        ({1: 5}, math.nan),  # no +Inf bucket
    ],
)
def test_histogram_quantile(buckets: dict[float, float], expected: float) -> None:
    got = histogram_quantile(0.99, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_increase_counts_a_restart_from_zero_and_new_series() -> None:
    a, b, c = (series(PROVIDER_ERRORS_SERIES, p, "fly", "server") for p in ("a", "b", "c"))
    base = figures(0, {a: 10, b: 50})
    now = figures(60, {a: 14, b: 3, c: 2})  # b restarted, c is new
    assert increases(base, now, PROVIDER_ERRORS_SERIES, lambda p: (p[1],)) == {("fly",): 9}


def test_duration() -> None:
    assert [duration(s) for s in (0, 90, 300, 900, 3600)] == ["0s", "90s", "5m", "15m", "1h"]


def test_summary_templates() -> None:
    labels = {"template": "react", "region": "ams"}
    assert render_summary(HIT_RATIO_LOW.summary, labels, 0.5) == "Pool react/ams hit ratio is 50%"
    assert render_summary("p99 {{ $value | humanize }}s", {}, 4.97500001) == "p99 4.975s"


def _pool_stats(hits: float, misses: float) -> dict[str, float]:
    return {
        series(POOL_STATS, "react", "ams", "hits"): hits,
        series(POOL_STATS, "react", "ams", "misses"): misses,
    }


@pytest.mark.parametrize(
    ("hits", "misses", "fires"),
    [(30, 30, True), (54, 6, False), (3, 12, False)],  # low ratio; healthy; too little traffic
)
def test_hit_ratio(hits: int, misses: int, fires: bool) -> None:
    history = [figures(0, _pool_stats(0, 0))]
    now = figures(600, _pool_stats(hits, misses), hot_ready={("react", "ams"): 3})
    names = [o.rule.name for o in observe(history, now)]
    assert (HIT_RATIO_LOW.name in names) is fires


def test_pool_exhausted_by_503s_or_an_empty_hot_tier_under_demand() -> None:
    exhausted = series(LEASES, "web", "react", "ams", "exhausted")
    history = [figures(0, {exhausted: 0, **_pool_stats(0, 0)})]
    by_503 = figures(60, {exhausted: 2, **_pool_stats(0, 2)}, hot_ready={("react", "ams"): 1})
    empty = figures(60, {exhausted: 0, **_pool_stats(4, 0)}, hot_ready={("react", "ams"): 0})
    idle = figures(60, {exhausted: 0, **_pool_stats(0, 0)}, hot_ready={("react", "ams"): 0})
    for now, fires in ((by_503, True), (empty, True), (idle, False)):
        names = [o.rule.name for o in observe(history, now)]
        assert (POOL_EXHAUSTED.name in names) is fires, now


def test_latency_orphans_heartbeat_and_stores() -> None:
    counters: dict[str, float] = {
        series(LEASE_BUCKET, "web", "react", "ams", "2.5"): 0,
        series(LEASE_BUCKET, "web", "react", "ams", "5"): 10,
        series(LEASE_BUCKET, "web", "react", "ams", "+Inf"): 10,
        series(APPLIED_BUCKET, "web", "0.05"): 10,
        series(APPLIED_BUCKET, "web", "+Inf"): 10,
        series(ORPHANS, "worker"): 1,
    }
    now = figures(120, counters, heartbeat=30.0, stores_up={"redis": True, "postgres": False})
    found = {o.key: o.value for o in observe([figures(0, {})], now)}
    assert found == {
        "PreviewLeaseLatencyHigh|template=react|region=ams": pytest.approx(4.975),
        "PreviewOrphansFound": 1,
        "PreviewWorkerHeartbeatStale": 90,
        "PreviewStoreDown|store=postgres": 0,
    }


def test_moves_pending_firing_resolved() -> None:
    seen = Observation(POOL_EXHAUSTED, (("template", "react"), ("region", "ams")), 3)
    state, move = advance(None, seen, 100)
    assert state is not None and (state.phase, move) == (Phase.PENDING, None)
    state, move = advance(state, seen, 100 + POOL_EXHAUSTED.for_seconds - 1)
    assert state is not None and (state.phase, move) == (Phase.PENDING, None)
    state, move = advance(state, seen, 100 + POOL_EXHAUSTED.for_seconds)
    assert state is not None and (state.phase, move) == (Phase.FIRING, Transition.FIRED)
    assert state.summary == "Pool react/ams is exhausted"
    again, move = advance(state, seen, 400)
    assert again == state and move is None  # announced once
    gone, move = advance(state, None, 500)
    assert (gone, move) == (None, Transition.RESOLVED)
    # A pending one that goes away is forgotten quietly; `for: 0s` fires at once.
    pending, _ = advance(None, seen, 0)
    assert advance(pending, None, 1) == (None, None)
    orphans = Observation(ORPHANS_FOUND, (), 1)
    fired, move = advance(None, orphans, 0)
    assert fired is not None and move is Transition.FIRED


def test_a_state_moves_only_by_its_own_observation() -> None:
    state = AlertState(
        "PreviewStoreDown|store=redis", STORE_DOWN.name, STORE_DOWN.severity, "", Phase.FIRING, 0
    )
    with pytest.raises(IllegalAlertMove):
        advance(state, Observation(STORE_DOWN, (("store", "postgres"),), 0), 10)


def test_advance_all_reports_what_fired_and_resolved() -> None:
    redis_down = Observation(STORE_DOWN, (("store", "redis"),), 0)
    states, moves = advance_all({}, [redis_down], 0)
    assert moves == []
    states, moves = advance_all(states, [redis_down], 60)
    assert [(s.key, m) for s, m in moves] == [(redis_down.key, Transition.FIRED)]
    states, moves = advance_all(states, [], 90)
    assert states == {} and [(s.key, m) for s, m in moves] == [
        (redis_down.key, Transition.RESOLVED)
    ]


def test_exposition_round_trip() -> None:
    registry = Registry()
    registry.counter("c_total", "c", ("kind",)).labels('a"b\\c').inc(3)
    registry.histogram("h_seconds", "h").labels().observe(0.3)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in parse_exposition(registry.render())
    }
    assert samples[("c_total", (("kind", 'a"b\\c'),))] == 3
    assert samples[("h_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("h_seconds_bucket", (("le", "+Inf"),))] == 1
    with pytest.raises(ExpositionError):
        parse_exposition("not a sample")
