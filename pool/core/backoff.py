"""Capped exponential backoff with jitter: how long to wait before a retry. Pure (the random
draw is passed in), used by the Fly client's retries and the worker's outage waits."""

from __future__ import annotations

import math
from collections.abc import Callable


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(problem)


def backoff_delay(
    attempt: int, *, base: float, cap: float, jitter: float, rand: Callable[[], float]
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry) of a call that failed
    (a provider API call, a worker waiting out a store outage).

    The ceiling doubles from `base` each attempt up to `cap`. A `jitter` fraction of it is
    randomised so that many failed creates do not retry in lockstep; jitter=1 is "full jitter"
    (anywhere in (0, ceiling]), jitter=0 is plain exponential backoff. `rand` returns a float in
    [0, 1) (`random.random` in production, a constant in tests).
    """
    _require(attempt >= 0, f"attempt must be >= 0, got {attempt}")
    _require(base > 0 and math.isfinite(base), f"base must be finite and > 0, got {base!r}")
    _require(cap >= base and math.isfinite(cap), f"cap must be finite and >= base, got {cap!r}")
    _require(0 <= jitter <= 1, f"jitter must be within [0, 1], got {jitter!r}")
    try:
        ceiling = min(cap, base * 2.0**attempt)
    except OverflowError:  # 2.0**attempt past ~1023 doublings: long since capped
        ceiling = cap
    r = rand()
    _require(0 <= r < 1, f"rand() must return a float in [0, 1), got {r!r}")
    return ceiling * (1.0 - jitter * r)
