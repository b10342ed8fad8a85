"""Retry delays and rate limits: pure decisions, the clock passed in."""

from __future__ import annotations

from dataclasses import dataclass


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float = 0.0) -> float:
    """Delay before retry number `attempt` (0 = the first retry): base * 2^attempt, capped.

    `jitter` in [0, 1) shortens the delay by that fraction, so machines that lost the
    orchestrator at the same moment do not all come back in the same instant.
    """
    delay = min(cap, base * 2.0 ** min(attempt, 32))
    return delay * (1.0 - jitter)


@dataclass
class TokenBucket:
    """`rate` events per second on average, bursts up to `burst`."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
