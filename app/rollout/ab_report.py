"""The A/B report: the new preview system against Appetize on real sessions, per arm, with
sample sizes, 95 % confidence intervals and whether each difference is significant.

The unit is the session: every figure is one value per session, so the tests' independence
assumption holds (an editor's many edits in one session are not independent observations).

    time to first preview   new: first_render - requested; Appetize: first_frame - requested
    edit to visible         per session, the median of its edits' latencies, read the same way
                            in both arms: as the upper bound of its bucket in the fixed latency
                            histogram (sql/latency.py, at most ~25 % above the true value),
                            capped by the session's largest. The new system keeps only that
                            histogram (edit applied in the preview); the panel reports each
                            Appetize edit (rebuild + upload + reload), which goes through the
                            same buckets so both arms are measured by the same ruler
    session length          ended - requested (sessions that have not ended are left out)
    error rate              new: sessions that failed; Appetize: sessions with an `error` stage
    fallback rate           new: attempts that fell back to Appetize (a fallback naming the
                            session, or one recorded before a session existed) over sessions
                            plus those session-less fallbacks; Appetize: its sessions that are
                            there because of a fallback. Different questions, so not compared

Differences are new - Appetize: negative times mean the new system is faster. Times: medians
with percentile-bootstrap CIs and the Mann-Whitney U test; means with Student-t CIs and Welch's
t-test. Rates: Wilson CIs, the difference with Newcombe's hybrid score CI and the pooled
two-proportion z-test. Significant: p < 0.05.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.rollout import ab_stats
from app.rollout.ab_stats import Interval, TestResult
from sql.ab_arms import AppetizeArmSession, NewArmSession
from sql.latency import LatencyHistogram

# Fixed, so the same sessions always give the same report (the bootstrap is random).
BOOTSTRAP_SEED = 20261204
TIME_METRICS = ("timeToFirstPreview", "editToVisible", "sessionLength")


@dataclass(frozen=True)
class ArmSample:
    """One arm's values, one per session (times in ms)."""

    sessions: int
    times: dict[str, list[float]]  # per TIME_METRICS name
    errors: int
    fallbacks: int
    fallback_base: int  # the fallback rate's denominator


@dataclass(frozen=True)
class TimeFigure:
    n: int
    median: float | None
    mean: float | None
    median_interval: Interval | None
    mean_interval: Interval | None


@dataclass(frozen=True)
class RateFigure:
    count: int
    n: int
    rate: float | None
    interval: Interval | None


@dataclass(frozen=True)
class ArmFigures:
    sessions: int
    times: dict[str, TimeFigure]
    rates: dict[str, RateFigure]


@dataclass(frozen=True)
class TimeComparison:
    medians: TestResult | None
    means: TestResult | None


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    new: ArmFigures
    appetize: ArmFigures
    times: dict[str, TimeComparison]
    rates: dict[str, TestResult | None]


def session_edit_median(latencies: LatencyHistogram) -> float | None:
    return latencies.quantile(0.5)


def new_arm_sample(rows: Sequence[NewArmSession], sessionless_fallbacks: int) -> ArmSample:
    edits = [session_edit_median(r.edits_applied) for r in rows]
    return ArmSample(
        sessions=len(rows),
        times=_times(rows, edits),
        errors=sum(r.failed for r in rows),
        fallbacks=sum(r.fell_back for r in rows) + sessionless_fallbacks,
        fallback_base=len(rows) + sessionless_fallbacks,
    )


def _times(
    rows: Sequence[NewArmSession] | Sequence[AppetizeArmSession], edits: list[float | None]
) -> dict[str, list[float]]:
    """The TIME_METRICS of an arm, each over the sessions that have it."""
    return {
        "timeToFirstPreview": _present(r.first_preview_ms for r in rows),
        "editToVisible": _present(edits),
        "sessionLength": _present(r.length_ms for r in rows),
    }


def appetize_arm_sample(rows: Sequence[AppetizeArmSession]) -> ArmSample:
    edits: list[float | None] = []
    for row in rows:
        histogram = LatencyHistogram()
        for ms in row.edit_latencies_ms:
            histogram.add(ms)
        edits.append(session_edit_median(histogram))
    return ArmSample(
        sessions=len(rows),
        times=_times(rows, edits),
        errors=sum(r.errored for r in rows),
        fallbacks=sum(r.reason == "fallback" for r in rows),
        fallback_base=len(rows),
    )


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def build_report(new: ArmSample, appetize: ArmSample, since: datetime, until: datetime) -> Report:
    """The report on two arms' samples. Deterministic: the bootstrap's generator is seeded."""
    rng = random.Random(BOOTSTRAP_SEED)
    new_times: dict[str, TimeFigure] = {}
    appetize_times: dict[str, TimeFigure] = {}
    comparisons: dict[str, TimeComparison] = {}
    for metric in TIME_METRICS:
        first, second = new.times[metric], appetize.times[metric]
        first_medians = ab_stats.bootstrap_medians(first, rng) if len(first) >= 2 else []
        second_medians = ab_stats.bootstrap_medians(second, rng) if len(second) >= 2 else []
        new_times[metric] = _time_figure(first, first_medians)
        appetize_times[metric] = _time_figure(second, second_medians)
        both = bool(first_medians and second_medians)
        comparisons[metric] = TimeComparison(
            medians=(
                ab_stats.median_difference(first, second, first_medians, second_medians)
                if both
                else None
            ),
            means=ab_stats.welch_t_test(first, second),
        )
    return Report(
        since=since,
        until=until,
        new=ArmFigures(new.sessions, new_times, _rates(new)),
        appetize=ArmFigures(appetize.sessions, appetize_times, _rates(appetize)),
        times=comparisons,
        rates={
            "errorRate": ab_stats.two_proportion_z_test(
                new.errors, new.sessions, appetize.errors, appetize.sessions
            ),
            "fallbackRate": None,
        },
    )


def _time_figure(values: list[float], medians: list[float]) -> TimeFigure:
    if not values:
        return TimeFigure(0, None, None, None, None)
    return TimeFigure(
        n=len(values),
        median=statistics.median(values),
        mean=statistics.fmean(values),
        median_interval=ab_stats.percentile_interval(medians) if medians else None,
        mean_interval=ab_stats.mean_interval(values),
    )


def _rates(sample: ArmSample) -> dict[str, RateFigure]:
    return {
        "errorRate": _rate(sample.errors, sample.sessions),
        "fallbackRate": _rate(sample.fallbacks, sample.fallback_base),
    }


def _rate(count: int, n: int) -> RateFigure:
    return RateFigure(count, n, count / n if n else None, ab_stats.wilson_interval(count, n))


# What each figure is, said in the report itself (and on the dashboard).
DEFINITIONS = {
    "timeToFirstPreview": "ms per session: new first_render - requested; Appetize first_frame "
    "- requested",
    "editToVisible": "ms per session: the median of its edits' latencies (new: edit applied "
    "in the preview; Appetize: rebuild + upload + reload as the panel reported), each read as "
    "its latency-histogram bucket's upper bound (at most ~25 % high), capped by the session's "
    "largest; sessions without an edit are left out",
    "sessionLength": "ms per ended session: ended - requested",
    "errorRate": "sessions: new failed, Appetize with an error stage",
    "fallbackRate": "new: attempts that fell back to Appetize; Appetize: its sessions there "
    "because of a fallback (not compared: different questions)",
    "medians": "median per arm with a percentile-bootstrap 95 % CI (2000 resamples); "
    "difference new - Appetize with a bootstrap CI and the Mann-Whitney U test",
    "means": "mean per arm with a Student-t 95 % CI; difference with Welch's t-test and CI",
    "rates": "Wilson score 95 % CI per arm; difference with Newcombe's hybrid score CI and "
    "the pooled two-proportion z-test",
    "significant": "p < 0.05",
}
