"""workers.outage: an outage is logged once when it begins and once when it ends, and the
retry delays are capped exponential backoff with jitter."""

from __future__ import annotations

import logging

import pytest

from workers.outage import OutageLog, RetryPolicy, Store, store_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_one_line_when_an_outage_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outages = OutageLog(clock)
    caplog.set_level(logging.DEBUG, logger="workers.outage")
    outages.up(Store.REDIS)  # nothing was down: nothing to say
    for _ in range(5):
        outages.down(Store.REDIS, ConnectionError("refused"))
        clock.now += 1
    assert outages.is_down(Store.REDIS) and not outages.is_down(Store.POSTGRES)
    outages.up(Store.REDIS)
    outages.up(Store.REDIS)
    assert _warnings(caplog) == [
        "Redis is unavailable (ConnectionError: refused); the worker keeps running and retries "
        "with backoff",
        "Redis is available again after 5.0 s of outage",
    ]


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [(0, 0.0, 0.5), (1, 0.0, 1.0), (3, 0.0, 4.0), (5, 0.0, 10.0), (50, 0.0, 10.0), (2, 0.99, 1.01)],
)
def test_retry_delays_double_up_to_the_cap_with_jitter(
    attempt: int, rand: float, expected: float
) -> None:
    assert RetryPolicy().delay(attempt, lambda: rand) == pytest.approx(expected)


def test_only_store_errors_count_as_an_outage() -> None:
    import redis.exceptions

    from pool.core.errors import PoolUnavailable
    from sql.errors import DatabaseUnavailable

    assert store_of(DatabaseUnavailable("x")) is Store.POSTGRES
    assert store_of(PoolUnavailable("x")) is Store.REDIS
    assert store_of(redis.exceptions.ConnectionError("x")) is Store.REDIS
    assert store_of(redis.exceptions.TimeoutError("x")) is Store.REDIS
    assert store_of(redis.exceptions.ResponseError("x")) is None
    assert store_of(RuntimeError("x")) is None
