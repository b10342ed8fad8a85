"""Backing off creates for a pool whose machines keep failing to come up (a broken template or
image): without it every resize run (every few seconds) would try again at full speed, forever.

Pure: the state is a value, the clock is passed in. The refill (pool.services.refill) keeps the
state in
Redis (pool.store.inventory), shared by every worker, and the operator's pool report shows it.

    run with creates, none came up   -> failures + 1, no create before now + delay
                                        (delay = base x 2^(failures - 1), capped)
    run while backing off            -> no creates (moves and destroys go on)
    first run after the delay        -> one create only: a probe
    any create came up               -> the state is cleared, full speed again
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class CreateBackoff:
    failures: int = 0  # runs in a row whose creates all failed
    retry_at: float = 0.0  # no create before this (Unix seconds)
    error: str = ""  # the last failure, for the operator

    def allowed_creates(self, wanted: int, now: float) -> int:
        """How many of `wanted` creates this run may try."""
        if self.failures == 0:
            return wanted
        if now < self.retry_at:
            return 0
        return min(wanted, 1)


def delay_after(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after `failures` failed runs in a row: exponential, capped."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 60))


def after_failure(
    backoff: CreateBackoff, error: str, now: float, *, base: float, cap: float
) -> CreateBackoff:
    failures = backoff.failures + 1
    return CreateBackoff(failures, now + delay_after(failures, base, cap), error[:MAX_ERROR_CHARS])
