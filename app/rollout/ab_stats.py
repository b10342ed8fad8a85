"""The statistics of the A/B report (app/rollout/ab_report.py), with the standard library only.

    times       median with a percentile-bootstrap 95 % CI; mean with a Student-t CI;
                difference of medians with a bootstrap CI and the Mann-Whitney U test (exact
                without ties for small samples, else the tie- and continuity-corrected normal
                approximation); difference of means with Welch's t-test and its CI
    proportions Wilson score CI per arm; difference with Newcombe's hybrid score CI (his
                method 10) and the pooled two-proportion z-test

Pure: no I/O. The bootstrap takes its random generator from the caller, so a report on the same
data is the same report. Every function returns None where a figure cannot be computed (too
few values, no variance) rather than an invented number.
"""

from __future__ import annotations

import collections
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 2000
# Exact Mann-Whitney distribution up to this many (x, y) pairs; above, the normal approximation
# is within a few thousandths and the exact count grows as n1·n2·(n1+n2).
EXACT_PAIRS = 400

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """A difference (first sample minus second), its CI, and a test's two-sided p-value."""

    difference: float
    interval: Interval | None
    p_value: float | None
    test: str

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value is not None and self.p_value < alpha


# -- Student's t ------------------------------------------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    # The continued fraction of the incomplete beta function (modified Lentz's method).
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (df > 0, not necessarily whole)."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on t_cdf (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p is strictly between 0 and 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


# -- times ------------------------------------------------------------------------------------


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The Student-t CI of the mean; None below two values."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean - half, mean + half)


def welch_t_test(
    first: Sequence[float], second: Sequence[float], confidence: float = CONFIDENCE
) -> TestResult | None:
    """Welch's unequal-variances t-test of mean(first) - mean(second), with its CI on the
    Welch-Satterthwaite degrees of freedom. None below two values in a sample or with no
    variance at all (the test is undefined)."""
    n1, n2 = len(first), len(second)
    if n1 < 2 or n2 < 2:
        return None
    v1, v2 = statistics.variance(first) / n1, statistics.variance(second) / n2
    difference = statistics.fmean(first) - statistics.fmean(second)
    if v1 + v2 == 0.0:
        return None
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    t = difference / se
    p = min(1.0, 2.0 * t_cdf(-abs(t), df))
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return TestResult(difference, Interval(difference - half, difference + half), p, "welch-t")


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return out


def _u_counts(n1: int, n2: int) -> list[int]:
    # counts[u]: the orderings of n1 x's and n2 y's whose U (pairs with x > y) is u.
    # f(m, n) = f(m - 1, n) shifted by n (the largest value is an x) + f(m, n - 1).
    table = [[[1] for _ in range(n2 + 1)] for _ in range(n1 + 1)]
    for m in range(1, n1 + 1):
        for n in range(1, n2 + 1):
            shifted = [0] * n + table[m - 1][n]
            other = table[m][n - 1]
            size = m * n + 1
            table[m][n] = [
                (shifted[u] if u < len(shifted) else 0) + (other[u] if u < len(other) else 0)
                for u in range(size)
            ]
    return table[n1][n2]


def mann_whitney_u(first: Sequence[float], second: Sequence[float]) -> tuple[float, float, str]:
    """(U of `first`, two-sided p-value, method). Exact when there are no ties and at most
    EXACT_PAIRS pairs; otherwise the normal approximation with the tie correction of the
    variance and a continuity correction of 0.5."""
    n1, n2 = len(first), len(second)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need a value")
    combined = [*first, *second]
    rank = ranks(combined)
    u1 = sum(rank[:n1]) - n1 * (n1 + 1) / 2.0
    tied = len(set(combined)) < len(combined)
    if not tied and n1 * n2 <= EXACT_PAIRS:
        counts = _u_counts(n1, n2)
        smaller = int(min(u1, n1 * n2 - u1))
        p = 2.0 * sum(counts[: smaller + 1]) / math.comb(n1 + n2, n1)
        return u1, min(1.0, p), "mann-whitney-u exact"
    total = n1 + n2
    ties = sum(t**3 - t for t in _tie_sizes(combined))
    variance = n1 * n2 / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0.0:
        return u1, 1.0, "mann-whitney-u normal approximation"
    distance = max(0.0, abs(u1 - n1 * n2 / 2.0) - 0.5)
    p = 2.0 * (1.0 - _NORMAL.cdf(distance / math.sqrt(variance)))
    return u1, min(1.0, p), "mann-whitney-u normal approximation"


def _tie_sizes(values: Sequence[float]) -> list[int]:
    return [n for n in collections.Counter(values).values() if n > 1]


def bootstrap_medians(
    values: Sequence[float], rng: random.Random, resamples: int = RESAMPLES
) -> list[float]:
    """The medians of `resamples` resamples (with replacement, same size) of `values`."""
    n = len(values)
    return [statistics.median(rng.choices(values, k=n)) for _ in range(resamples)]


def percentile_interval(estimates: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The percentile-bootstrap CI: the (1 - confidence)/2 and (1 + confidence)/2 quantiles of
    the bootstrap estimates (nearest rank)."""
    ordered = sorted(estimates)
    tail = (1.0 - confidence) / 2.0
    low = ordered[max(0, math.ceil(tail * len(ordered)) - 1)]
    high = ordered[min(len(ordered) - 1, math.ceil((1.0 - tail) * len(ordered)) - 1)]
    return Interval(low, high)


def median_difference(
    first: Sequence[float],
    second: Sequence[float],
    first_medians: Sequence[float],
    second_medians: Sequence[float],
    confidence: float = CONFIDENCE,
) -> TestResult:
    """median(first) - median(second): a percentile-bootstrap CI from the two samples'
    bootstrap medians (independent resamples, paired by index) and the Mann-Whitney test."""
    difference = statistics.median(first) - statistics.median(second)
    interval = percentile_interval(
        [a - b for a, b in zip(first_medians, second_medians, strict=True)], confidence
    )
    _, p, method = mann_whitney_u(first, second)
    return TestResult(difference, interval, p, method)


# -- proportions ------------------------------------------------------------------------------


def _z(confidence: float) -> float:
    return _NORMAL.inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(count: int, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson's score CI of count/n (no continuity correction); None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= count <= n:
        raise ValueError("count is between 0 and n")
    z = _z(confidence)
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(
    count1: int, n1: int, count2: int, n2: int, confidence: float = CONFIDENCE
) -> Interval | None:
    """Newcombe's hybrid score CI (1998, method 10) of count1/n1 - count2/n2."""
    first, second = wilson_interval(count1, n1, confidence), wilson_interval(count2, n2, confidence)
    if first is None or second is None:
        return None
    p1, p2 = count1 / n1, count2 / n2
    d = p1 - p2
    return Interval(
        d - math.sqrt((p1 - first.low) ** 2 + (second.high - p2) ** 2),
        d + math.sqrt((first.high - p1) ** 2 + (p2 - second.low) ** 2),
    )


def two_proportion_z_test(
    count1: int, n1: int, count2: int, n2: int, confidence: float = CONFIDENCE
) -> TestResult | None:
    """count1/n1 - count2/n2 with Newcombe's CI and the pooled two-proportion z-test's
    two-sided p-value (1 when both rates are 0 or both 1: nothing differs). None when a
    sample is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    difference = count1 / n1 - count2 / n2
    pooled = (count1 + count2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p = 1.0 if se == 0.0 else 2.0 * (1.0 - _NORMAL.cdf(abs(difference) / se))
    return TestResult(
        difference,
        newcombe_interval(count1, n1, count2, n2, confidence),
        min(1.0, p),
        "two-proportion-z",
    )
