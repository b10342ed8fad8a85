"""The pool history's pure parts: a sample's stored form and the windowed hit ratio."""

from __future__ import annotations

import pytest

from pool.core.pool_history import PoolSample, windowed_hit_ratios


def _sample(at: float, hits: int, misses: int, hot: int = 1) -> PoolSample:
    return PoolSample(at, "react-web", "local", hot, 2, 3, 4, 5, hits, misses)


def test_a_sample_reads_back_as_written() -> None:
    sample = _sample(1_700_000_000.123, 7, 2)
    assert PoolSample.decode(sample.encode()) == sample


@pytest.mark.parametrize(
    "stored",
    ["", "nope", "{}", "[1, 2]", '[1, "t", "r", 1, 2, 3, 4, 5, 6]', '[1,"t","r",1,2,3,4,5,6,"x"]'],
)
def test_anything_else_reads_as_nothing(stored: str) -> None:
    assert PoolSample.decode(stored) is None


@pytest.mark.parametrize(
    ("counters", "window", "expected"),
    [
        # (at, hits, misses) per sample
        ([(0, 0, 0)], 300, [None]),
        # 3 hits and 1 miss since the first sample: 0.75
        ([(0, 0, 0), (10, 3, 1)], 300, [None, 0.75]),
        # no lease attempted since the window's oldest sample
        ([(0, 5, 5), (10, 5, 5)], 300, [None, None]),
        # the window slides: at 30 only the samples from 10 count (9 hits since then, 1 miss)
        ([(0, 0, 0), (10, 0, 10), (20, 5, 10), (30, 9, 11)], 20, [None, 0.0, 0.3333, 0.9]),
        # Redis lost its counters at 20: the window starts over there
        ([(0, 0, 0), (10, 50, 50), (20, 1, 0), (30, 3, 1)], 300, [None, 0.5, None, 0.6667]),
    ],
)
def test_the_hit_ratio_covers_the_window_before_each_sample(
    counters: list[tuple[float, int, int]], window: float, expected: list[float | None]
) -> None:
    samples = [_sample(at, hits, misses) for at, hits, misses in counters]
    assert windowed_hit_ratios(samples, window) == expected
