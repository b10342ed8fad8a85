"""A fixed-bucket latency histogram: how a session's edit latencies are summarised.

One row per session (`session_edit_latency`) instead of one per edit. Buckets are fixed and the
same everywhere, so two histograms add up exactly: every editor socket of a session, on any
instance, keeps its own in memory and adds it to the session's row. A percentile read from the
buckets is the upper bound of the bucket it falls in (never below the true value, at most one
bucket width above: the bounds grow by about 25 % a step), capped by the exact maximum.

Pure: no I/O; the gateway records into it and sql/timelines.py stores and reads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# Upper bounds (ms) of every bucket but the last, which holds everything above.
BOUNDS_MS: tuple[float, ...] = (
    *(1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150),
    *(200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000),
    *(5000, 6000, 8000, 10000, 12000, 15000, 20000, 30000, 60000),
)
BUCKETS = len(BOUNDS_MS) + 1


def bucket_of(ms: float) -> int:
    """The bucket a latency falls in: the first whose upper bound is at least `ms`."""
    low, high = 0, len(BOUNDS_MS)
    while low < high:
        middle = (low + high) // 2
        if BOUNDS_MS[middle] >= ms:
            high = middle
        else:
            low = middle + 1
    return low


@dataclass
class LatencyHistogram:
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    max_ms: float = 0.0

    @classmethod
    def of(cls, counts: Sequence[int], max_ms: float) -> LatencyHistogram:
        """A histogram as stored; buckets missing from a shorter row count as empty."""
        padded = [int(c) for c in counts[:BUCKETS]]
        padded += [0] * (BUCKETS - len(padded))
        return cls(padded, float(max_ms))

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, ms: float) -> None:
        ms = max(0.0, ms)
        self.counts[bucket_of(ms)] += 1
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0 < q <= 1) as the upper bound of its bucket, capped by the
        maximum; None for an empty histogram."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                bound = BOUNDS_MS[index] if index < len(BOUNDS_MS) else self.max_ms
                return min(bound, self.max_ms)
        return self.max_ms  # unreachable: the counts sum to total
