"""The A/B report on the wire (GET /api/admin/rollout/report and `rollout report --json`):
the query in, the report out. Same style as app/timeline_schemas.py (camelCase, strict query)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.rollout.ab_report import (
    DEFINITIONS,
    ArmFigures,
    RateFigure,
    Report,
    TimeComparison,
    TimeFigure,
)
from app.rollout.ab_stats import ALPHA, CONFIDENCE, Interval, TestResult
from app.timeline_schemas import SinceText, parse_since

DEFAULT_WINDOW = timedelta(days=7)


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    since: SinceText | None = None


def report_since(text: str | None, now: datetime) -> datetime:
    """The report's window starts at `since` (seconds ago or an ISO-8601 time, not in the
    future), by default a week ago. Raises ValueError with a sentence for the caller."""
    return now - DEFAULT_WINDOW if text is None else parse_since(text, now)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ConfidenceIntervalView(_View):
    low: float
    high: float


class ArmTimeView(_View):
    n: int = Field(description="sessions with this figure")
    p50_ms: float | None
    mean_ms: float | None
    p50_ci: ConfidenceIntervalView | None = Field(description="percentile bootstrap, 95 %")
    mean_ci: ConfidenceIntervalView | None = Field(description="Student t, 95 %")


class ArmRateView(_View):
    count: int
    n: int
    rate: float | None
    ci: ConfidenceIntervalView | None = Field(description="Wilson score, 95 %")


class RolloutArmView(_View):
    sessions: int
    time_to_first_preview: ArmTimeView
    edit_to_visible: ArmTimeView
    session_length: ArmTimeView
    error_rate: ArmRateView
    fallback_rate: ArmRateView


class ArmDifferenceView(_View):
    difference: float = Field(description="new - Appetize (ms for times, a share for rates)")
    ci: ConfidenceIntervalView | None
    p_value: float | None
    significant: bool
    test: str


class TimeDifferenceView(_View):
    medians: ArmDifferenceView | None = Field(description="bootstrap CI, Mann-Whitney U")
    means: ArmDifferenceView | None = Field(description="Welch's t")


class ArmComparisonsView(_View):
    time_to_first_preview: TimeDifferenceView
    edit_to_visible: TimeDifferenceView
    session_length: TimeDifferenceView
    error_rate: ArmDifferenceView | None = Field(description="Newcombe CI, two-proportion z-test")
    fallback_rate: None = Field(
        description="always null: the arms' fallback rates answer different questions"
    )


class RolloutArmsView(_View):
    new: RolloutArmView
    appetize: RolloutArmView


class RolloutReportView(_View):
    since: datetime
    until: datetime
    alpha: float
    confidence: float
    arms: RolloutArmsView
    comparisons: ArmComparisonsView
    definitions: dict[str, str] = Field(description="which statistic each figure is")
    direction: Literal["new - appetize"]


def _interval(interval: Interval | None, digits: int) -> ConfidenceIntervalView | None:
    if interval is None:
        return None
    return ConfidenceIntervalView(
        low=round(interval.low, digits), high=round(interval.high, digits)
    )


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _time(figure: TimeFigure) -> ArmTimeView:
    return ArmTimeView(
        n=figure.n,
        p50_ms=_ms(figure.median),
        mean_ms=_ms(figure.mean),
        p50_ci=_interval(figure.median_interval, 1),
        mean_ci=_interval(figure.mean_interval, 1),
    )


def _rate(figure: RateFigure) -> ArmRateView:
    return ArmRateView(
        count=figure.count,
        n=figure.n,
        rate=None if figure.rate is None else round(figure.rate, 6),
        ci=_interval(figure.interval, 6),
    )


def _arm(arm: ArmFigures) -> RolloutArmView:
    return RolloutArmView(
        sessions=arm.sessions,
        time_to_first_preview=_time(arm.times["timeToFirstPreview"]),
        edit_to_visible=_time(arm.times["editToVisible"]),
        session_length=_time(arm.times["sessionLength"]),
        error_rate=_rate(arm.rates["errorRate"]),
        fallback_rate=_rate(arm.rates["fallbackRate"]),
    )


def _difference(result: TestResult | None, digits: int) -> ArmDifferenceView | None:
    if result is None:
        return None
    return ArmDifferenceView(
        difference=round(result.difference, digits),
        ci=_interval(result.interval, digits),
        p_value=result.p_value,  # unrounded: a small p stays distinguishable from 0
        significant=result.significant(ALPHA),
        test=result.test,
    )


def _compared(comparison: TimeComparison) -> TimeDifferenceView:
    return TimeDifferenceView(
        medians=_difference(comparison.medians, 1), means=_difference(comparison.means, 1)
    )


def report_view(report: Report) -> RolloutReportView:
    return RolloutReportView(
        since=report.since,
        until=report.until,
        alpha=ALPHA,
        confidence=CONFIDENCE,
        arms=RolloutArmsView(new=_arm(report.new), appetize=_arm(report.appetize)),
        comparisons=ArmComparisonsView(
            time_to_first_preview=_compared(report.times["timeToFirstPreview"]),
            edit_to_visible=_compared(report.times["editToVisible"]),
            session_length=_compared(report.times["sessionLength"]),
            error_rate=_difference(report.rates["errorRate"], 6),
            fallback_rate=None,
        ),
        definitions=DEFINITIONS,
        direction="new - appetize",
    )
