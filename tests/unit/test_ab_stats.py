"""The A/B report's statistics (app/rollout/ab_stats.py) against published examples and values
computed here by hand."""

from __future__ import annotations

import math
import random

import pytest

from app.rollout import ab_stats
from app.rollout.ab_stats import Interval


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize(
    ("df", "quantile"),
    # The t table's 97.5 % points.
    [(1, 12.706), (2, 4.303), (4, 2.776), (8, 2.306), (10, 2.228), (30, 2.042), (1e9, 1.960)],
)
def test_t_quantiles_are_the_tables(df: float, quantile: float) -> None:
    assert ab_stats.t_quantile(0.975, df) == pytest.approx(quantile, abs=5e-4)
    assert ab_stats.t_quantile(0.025, df) == pytest.approx(-quantile, abs=5e-4)


@pytest.mark.parametrize("t", [-7.5, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, 40.0])
def test_t_cdf_matches_the_closed_forms_of_one_and_two_degrees_of_freedom(t: float) -> None:
    # df 1 is Cauchy: 1/2 + atan(t)/π. df 2: 1/2 + t / (2 √(2 + t²)).
    assert ab_stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert ab_stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_quantile_refuses_probabilities_outside_zero_and_one() -> None:
    for p in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="strictly between"):
            ab_stats.t_quantile(p, 5)


def test_welch_on_wikipedias_first_example() -> None:
    # en.wikipedia.org/wiki/Welch's_t-test, "Examples": t = -2.46, df = 25.0, p = 0.021.
    first = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0,
             21.7, 21.4]  # fmt: skip
    second = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9,
              20.5, 24.4]  # fmt: skip
    result = ab_stats.welch_t_test(first, second)
    assert result is not None
    assert result.difference == pytest.approx(20.82 - 22.986666, abs=1e-4)
    assert result.p_value == pytest.approx(0.021, abs=5e-4)
    assert result.significant()
    assert result.interval is not None
    assert result.interval.low < result.difference < result.interval.high < 0


def test_welch_with_equal_variances_and_sizes_has_2n_minus_2_degrees_of_freedom() -> None:
    # Means 2 and 5, both with s² = 1 and n = 3: se = √(2/3), t = -3/se = -3.674, df = 4.
    result = ab_stats.welch_t_test([1, 2, 3], [4, 5, 6])
    assert result is not None
    se = math.sqrt(2 / 3)
    half = 2.776445105197793 * se
    assert result.interval is not None
    assert result.interval.low == pytest.approx(-3 - half)
    assert result.interval.high == pytest.approx(-3 + half)
    # df 4, closed form: P(|T| < t) = sin θ (1 + cos²θ / 2), θ = atan(t / 2).
    theta = math.atan(3 / se / 2)
    expected = 1 - math.sin(theta) * (1 + math.cos(theta) ** 2 / 2)
    assert result.p_value == pytest.approx(expected, rel=1e-9)  # 0.0213


def test_welch_is_undefined_without_values_or_variance() -> None:
    assert ab_stats.welch_t_test([1.0], [2.0, 3.0]) is None
    assert ab_stats.welch_t_test([2.0, 2.0], [2.0, 2.0]) is None
    assert ab_stats.mean_interval([5.0]) is None


def test_ranks_average_ties() -> None:
    assert ab_stats.ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4]
    assert ab_stats.ranks([3, 1, 2]) == [3, 1, 2]


def test_mann_whitney_exact_for_small_samples_without_ties() -> None:
    # Apart: U = 0, two orderings of C(6, 3) = 20 are as extreme.
    assert ab_stats.mann_whitney_u([1, 2, 3], [4, 5, 6]) == (0, 0.1, "mann-whitney-u exact")
    assert ab_stats.mann_whitney_u([4, 5, 6], [1, 2, 3])[:2] == (9, 0.1)
    # 4 and 4: the null counts of U are 1 1 2 3 5 5 7 7 8 7 7 5 5 3 2 1 1 (70 orderings).
    # x = 1 4 6 8, y = 2 3 5 7: U(x) = 0 + 2 + 3 + 4 = 9, P(U ≤ 7) = 31/70.
    u, p, _ = ab_stats.mann_whitney_u([1, 4, 6, 8], [2, 3, 5, 7])
    assert u == 9 and p == pytest.approx(62 / 70)


def test_mann_whitney_normal_approximation_with_ties() -> None:
    # x = 1 2 2 4, y = 2 3 4 4 5. Ranks: 1 → 1; the three 2s → 3; 3 → 5; the three 4s → 7;
    # 5 → 9. R(x) = 1 + 3 + 3 + 7 = 14, U = 14 - 10 = 4, mean 10. Var = 20/12 · (10 - 48/72)
    # = 15.556; z = (|4 - 10| - 0.5) / 3.944 = 1.3945.
    u, p, method = ab_stats.mann_whitney_u([1, 2, 2, 4], [2, 3, 4, 4, 5])
    assert u == 4
    z = 5.5 / math.sqrt(20 / 12 * (10 - 48 / 72))
    assert p == pytest.approx(2 * (1 - _phi(z)), rel=1e-9)  # 0.1632
    assert method == "mann-whitney-u normal approximation"
    # Everything tied: no evidence either way.
    assert ab_stats.mann_whitney_u([3, 3], [3, 3, 3])[1] == 1.0
    with pytest.raises(ValueError):
        ab_stats.mann_whitney_u([], [1.0])


def test_percentile_interval_takes_the_nearest_ranks() -> None:
    estimates = [float(v) for v in range(100, 0, -1)]
    assert ab_stats.percentile_interval(estimates) == Interval(3, 98)
    assert ab_stats.percentile_interval(estimates, 0.9) == Interval(5, 95)


def test_bootstrap_medians_are_reproducible_and_drawn_from_the_sample() -> None:
    values = [5.0, 1.0, 9.0, 3.0]
    first = ab_stats.bootstrap_medians(values, random.Random(7), resamples=300)
    again = ab_stats.bootstrap_medians(values, random.Random(7), resamples=300)
    assert first == again and len(first) == 300
    assert min(first) >= 1 and max(first) <= 9
    assert len(set(first)) > 3  # resamples differ (the midpoints of pairs appear too)
    assert set(ab_stats.bootstrap_medians([4.0], random.Random(1), resamples=10)) == {4.0}


@pytest.mark.parametrize(
    ("count", "n", "low", "high"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat Med
    # 17:857, table I, the score method without continuity correction.
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_as_newcombe_publishes_it(
    count: int, n: int, low: float, high: float
) -> None:
    interval = ab_stats.wilson_interval(count, n)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_wilson_needs_a_sample_and_a_count_within_it() -> None:
    assert ab_stats.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        ab_stats.wilson_interval(4, 3)


@pytest.mark.parametrize(
    ("c1", "n1", "c2", "n2", "low", "high"),
    # Newcombe (1998), "Interval estimation for the difference between independent
    # proportions", Stat Med 17:873, table II, method 10 (hybrid score).
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
    ],
)
def test_newcombe_interval_as_published(
    c1: int, n1: int, c2: int, n2: int, low: float, high: float
) -> None:
    interval = ab_stats.newcombe_interval(c1, n1, c2, n2)
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_two_proportion_z_test_by_hand() -> None:
    # 45/100 against 30/100: pooled 0.375, se = √(0.375 · 0.625 · 2/100) = 0.068465,
    # z = 0.15 / 0.068465 = 2.1909, p = 0.02846.
    result = ab_stats.two_proportion_z_test(45, 100, 30, 100)
    assert result is not None
    z = 0.15 / math.sqrt(0.375 * 0.625 * 0.02)
    assert result.difference == pytest.approx(0.15)
    assert result.p_value == pytest.approx(2 * (1 - _phi(z)), rel=1e-12)
    assert result.p_value == pytest.approx(0.02846, abs=1e-5)
    assert result.significant() and not result.significant(alpha=0.01)
    assert result.interval == ab_stats.newcombe_interval(45, 100, 30, 100)


def test_two_proportion_z_test_without_differences_or_samples() -> None:
    nothing = ab_stats.two_proportion_z_test(0, 12, 0, 30)
    assert nothing is not None and nothing.p_value == 1.0 and not nothing.significant()
    assert ab_stats.two_proportion_z_test(1, 0, 1, 4) is None
