"""A pool's recent past, sampled: what the operator's dashboard charts over the last hour.

The worker records one `PoolSample` per pool every SAMPLE_SECONDS (pool.services.pool_history)
and the store keeps the last HISTORY_SECONDS of them (pool.store.pool_history). A sample holds
the pool's lease counters as they stood (cumulative since Redis was filled), not a ratio: the
hit ratio a chart shows is the one of a recent window, worked out here from two samples, so a
pool that served a thousand hits yesterday and misses every lease now shows its ratio falling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

SAMPLE_SECONDS = 10
HISTORY_SECONDS = 3600
# The window a sample's hit ratio covers: long enough to hold a few leases of a quiet pool.
HIT_RATIO_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class PoolSample:
    at: float  # Unix seconds, the sampler's clock
    template: str
    region: str
    hot: int  # ready machines per tier
    suspended: int
    stopped: int
    leased: int
    booting: int
    hits: int  # the pool's lease counters when sampled (cumulative)
    misses: int

    def encode(self) -> str:
        """The sample as stored: compact JSON, unique per (pool, time)."""
        return json.dumps(
            [
                round(self.at, 3),
                self.template,
                self.region,
                self.hot,
                self.suspended,
                self.stopped,
                self.leased,
                self.booting,
                self.hits,
                self.misses,
            ],
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> PoolSample | None:
        """The sample `encode` wrote, or None for anything else (a record of another version
        is skipped, not a failure of the whole history)."""
        try:
            at, template, region, *counts = json.loads(text)
            hot, suspended, stopped, leased, booting, hits, misses = (int(n) for n in counts)
            return cls(
                float(at),
                str(template),
                str(region),
                hot,
                suspended,
                stopped,
                leased,
                booting,
                hits,
                misses,
            )
        except (ValueError, TypeError):
            return None


def windowed_hit_ratios(
    samples: Sequence[PoolSample], window_seconds: float = HIT_RATIO_WINDOW_SECONDS
) -> list[float | None]:
    """For each sample of one pool (in time order), the share of lease attempts served from
    the pool in the `window_seconds` before it: the difference between its counters and those
    of the oldest sample still inside the window. None where no lease was attempted in the
    window, or where the counters went down (Redis lost its data: the window starts over)."""
    ratios: list[float | None] = []
    start = 0
    for index, sample in enumerate(samples):
        while start < index and samples[start].at < sample.at - window_seconds:
            start += 1
        previous = samples[index - 1] if index else sample
        if sample.hits < previous.hits or sample.misses < previous.misses:
            start = index  # counters reset: nothing before this sample compares with it
        base = samples[start]
        hits, misses = sample.hits - base.hits, sample.misses - base.misses
        ratios.append(round(hits / (hits + misses), 4) if hits + misses else None)
    return ratios
