"""The pure parts of session timelines: the latency histogram, `since`, and the per-socket edit
timings (with a fake clock and a flush that records what it was given)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.realtime.edit_timings import EditTimings
from app.timeline_schemas import parse_since
from sql.errors import DatabaseUnavailable
from sql.latency import BOUNDS_MS, BUCKETS, LatencyHistogram, bucket_of


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [(0, 0), (1, 0), (1.01, 1), (2, 1), (150, 19), (151, 20), (60000, 42), (60001, 43)],
)
def test_a_latency_falls_in_the_first_bucket_whose_bound_holds_it(ms: float, bucket: int) -> None:
    assert bucket_of(ms) == bucket
    assert BUCKETS == len(BOUNDS_MS) + 1 == 44  # the last holds everything over a minute


def test_a_quantile_is_its_buckets_bound_never_below_the_true_value() -> None:
    rng = random.Random(11)
    samples = [rng.lognormvariate(3, 1.5) for _ in range(2000)]
    histogram = LatencyHistogram()
    for ms in samples:
        histogram.add(ms)
    ordered = sorted(samples)
    for q in (0.5, 0.95, 0.99):
        true = ordered[int(q * len(ordered)) - 1]
        got = histogram.quantile(q)
        assert got is not None
        assert true <= got <= max(true * 1.34, 1.0), q  # at most one bucket above
    assert histogram.quantile(1.0) == histogram.max_ms == max(samples)
    assert LatencyHistogram().quantile(0.5) is None


def test_histograms_add_up_exactly() -> None:
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i, ms in enumerate([0.5, 7, 7, 90, 1200, 99999]):
        (a if i % 2 else b).add(ms)
        both.add(ms)
    a.merge(b)
    assert a == both
    stored = LatencyHistogram.of(both.counts[:10], both.max_ms)  # a shorter stored row
    assert stored.counts[:10] == both.counts[:10] and len(stored.counts) == BUCKETS


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, NOW - timedelta(hours=1)),
        ("0", NOW),
        ("90", NOW - timedelta(seconds=90)),
        ("2026-03-01T11:00:00Z", NOW - timedelta(hours=1)),
        ("2026-03-01t11:00:00z", NOW - timedelta(hours=1)),
        ("2026-03-01T13:00:00+02:00", NOW - timedelta(hours=1)),
        ("2026-03-01T11:00:00", NOW - timedelta(hours=1)),  # no zone: UTC
        ("0001-01-01T00:00:00+23:59", datetime.min.replace(tzinfo=UTC)),
    ],
)
def test_since_is_seconds_ago_or_a_time(text: str | None, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-03-01T12:00:01Z", "future"),
        ("-5", "ISO-8601"),
        ("1h", "ISO-8601"),
        ("2026-02-30T00:00:00Z", "ISO-8601"),
        ("", "ISO-8601"),
    ],
)
def test_since_refuses_the_future_and_anything_else(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_since(text, NOW)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_edit_timings_measure_ack_and_applied_and_flush_on_close() -> None:
    clock = Clock()
    flushed: list[tuple[LatencyHistogram, LatencyHistogram]] = []

    async def flush(ack: LatencyHistogram, applied: LatencyHistogram) -> None:
        flushed.append((ack, applied))

    timings = EditTimings(flush, interval=60, clock=clock)
    timings.started(1, clock.now)
    clock.now += 0.004
    assert timings.acked(1) == pytest.approx(4)
    timings.started(2, clock.now)
    timings.started(3, clock.now)
    timings.dropped(3)  # refused: never acked, never applied
    # The report of 2 (cumulative: 1 too) overtakes 2's ack.
    clock.now += 0.050
    assert timings.applied(2) == pytest.approx([54, 50])
    clock.now += 0.001
    assert timings.acked(2) == pytest.approx(51)
    assert timings.acked(2) is None  # once
    assert timings.applied(3) == []
    assert flushed == []  # the interval has not passed
    await timings.aclose()
    [(ack, applied)] = flushed
    assert (ack.count, applied.count) == (2, 2)
    assert ack.max_ms == pytest.approx(51) and applied.max_ms == pytest.approx(54)


async def test_edit_timings_flush_every_interval_and_keep_what_a_failed_write_held() -> None:
    clock = Clock()
    calls: list[int] = []

    async def flush(ack: LatencyHistogram, applied: LatencyHistogram) -> None:
        calls.append(ack.count)
        if len(calls) == 1:
            raise DatabaseUnavailable("down")

    timings = EditTimings(flush, interval=10, clock=clock)
    for seq in range(1, 4):
        timings.started(seq, clock.now)
        clock.now += 6
        timings.acked(seq)  # the 2nd (12 s in) flushes two acks, and that write fails
    await timings.aclose()
    # The failed write's two acks were kept and went with the third at the close.
    assert calls == [2, 3]
