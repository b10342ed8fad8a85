"""Creates for a pool that keep failing back off: a table of runs on a clock passed in."""

from __future__ import annotations

import pytest

from pool.core.create_backoff import MAX_ERROR_CHARS, CreateBackoff, after_failure, delay_after


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 5.0), (2, 10.0), (3, 20.0), (6, 160.0), (7, 300.0), (50, 300.0), (10**6, 300.0)],
)
def test_the_delay_doubles_per_failed_run_up_to_the_cap(failures: int, delay: float) -> None:
    assert delay_after(failures, base=5.0, cap=300.0) == delay


def test_a_pool_backs_off_probes_once_and_recovers() -> None:
    fresh = CreateBackoff()
    assert fresh.allowed_creates(4, now=0.0) == 4

    failed = after_failure(fresh, "template react-web is broken", 100.0, base=5.0, cap=300.0)
    assert (failed.failures, failed.retry_at) == (1, 105.0)
    assert failed.allowed_creates(4, now=104.9) == 0  # backing off
    assert failed.allowed_creates(4, now=105.0) == 1  # one probe, not four
    assert failed.allowed_creates(0, now=105.0) == 0  # nothing wanted, nothing tried

    again = after_failure(failed, "still broken", 105.0, base=5.0, cap=300.0)
    assert (again.failures, again.retry_at, again.error) == (2, 115.0, "still broken")


def test_a_long_error_is_cut() -> None:
    backoff = after_failure(CreateBackoff(), "x" * 5000, 0.0, base=1.0, cap=2.0)
    assert len(backoff.error) == MAX_ERROR_CHARS
