"""Two test runs on one host never share a Redis database (tests/redis_claim.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from tests import redis_claim

ROOT = Path(__file__).resolve().parents[2]
CLAIM_IN_CHILD = (
    "import sys; from tests import redis_claim; print(redis_claim.claim(sys.argv[1]), flush=True);"
    " sys.stdin.read()"
)


def _claim_elsewhere(purpose: str) -> tuple[subprocess.Popen[str], str]:
    """Another process (another test run) that claims a database and holds it until told."""
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIM_IN_CHILD, purpose],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_a_claimed_database_is_never_given_to_another_run() -> None:
    mine = redis_claim.claim("claim-test")
    child, theirs = _claim_elsewhere("claim-test")
    try:
        assert theirs.startswith(redis_claim.SERVER + "/")
        assert theirs != mine
    finally:
        child.communicate("")
    # Released at the other run's exit: its claim is gone and its database is left empty.
    control = redis.Redis.from_url(redis_claim.url_of(0))
    theirs_db = int(theirs.rsplit("/", 1)[1])
    try:
        assert control.get(redis_claim.CLAIM_KEY.format(theirs_db)) is None
    finally:
        control.close()
    leftover = redis.Redis.from_url(theirs)
    try:
        assert leftover.keys("*") == [redis_claim.MARKER.encode()]
    finally:
        leftover.close()


def test_a_database_holding_someone_elses_data_is_skipped() -> None:
    # A database of ours, turned into "someone else's": data without the tests' marker and
    # without a claim (say a developer's `dev` pointed at it).
    url = redis_claim.claim("claim-test-foreign")
    db = int(url.rsplit("/", 1)[1])
    foreign = redis.Redis.from_url(url)
    control = redis.Redis.from_url(redis_claim.url_of(0))
    try:
        foreign.delete(redis_claim.MARKER)
        foreign.set("someone:else", "precious")
        control.delete(redis_claim.CLAIM_KEY.format(db))
        child, theirs = _claim_elsewhere("claim-test-foreign")
        child.communicate("")
        assert theirs != url
        assert foreign.get("someone:else") == b"precious"
    finally:
        control.set(redis_claim.CLAIM_KEY.format(db), redis_claim._owner, ex=60)
        redis_claim.flush(url)
        foreign.close()
        control.close()
