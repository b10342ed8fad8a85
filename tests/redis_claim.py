"""Redis databases claimed for one test run, so that two runs on one host never share one.

Every test run (and every benchmark) flushes the databases it works in; with fixed numbers two
checkouts on one host flushed each other's data mid-test. Instead each run claims free
databases on the server: a claim is a key `po-tests:claim:<n>` in database 0 (which the tests
never flush), set with NX and an expiry that a daemon thread keeps renewing while the process
lives. A database is free when nobody holds its claim and it is empty or carries the marker
`po-tests:owned` (a database a test run used, left behind by a run that was killed: nobody
else's data). A claimed database is flushed when claimed and when released at exit.

TEST_REDIS_SERVER (default redis://127.0.0.1:6379) names the server; the explicit URLs the
suite has always honoured (TEST_REDIS_URL, E2E_REDIS_URL, ...) still win over a claim.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import uuid

import redis

from tests.redis_replies import sync_reply

SERVER = os.environ.get("TEST_REDIS_SERVER", "redis://127.0.0.1:6379").rstrip("/")
CLAIM_KEY = "po-tests:claim:{}"
MARKER = "po-tests:owned"
CLAIM_TTL_SECONDS = 90
RENEW_EVERY_SECONDS = 20

_owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_claimed: dict[str, int] = {}
_lock = threading.Lock()
_renewer: threading.Thread | None = None


def _control() -> redis.Redis:
    return redis.Redis.from_url(f"{SERVER}/0", socket_timeout=5)


def _database_count(control: redis.Redis) -> int:
    try:
        reply = sync_reply(control.config_get("databases"))
        return int(reply.get("databases", 16))
    except redis.ResponseError:  # CONFIG is disabled on some servers: Redis's default
        return 16


def url_of(db: int) -> str:
    return f"{SERVER}/{db}"


def flush(url: str) -> None:
    """Empties a claimed database and marks it as the tests' own."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        client.set(MARKER, _owner)
    finally:
        client.close()


def claim(purpose: str) -> str:
    """The URL of a database this process holds for `purpose` (the same one on every call)."""
    with _lock:
        if purpose in _claimed:
            return url_of(_claimed[purpose])
        control = _control()
        try:
            for db in range(1, _database_count(control)):
                if db in _claimed.values():
                    continue
                probe = redis.Redis.from_url(url_of(db), socket_timeout=5)
                try:
                    size = int(sync_reply(probe.dbsize()))
                    ours = size == 0 or probe.exists(MARKER) == 1
                finally:
                    probe.close()
                if not ours:
                    continue
                if control.set(CLAIM_KEY.format(db), _owner, nx=True, ex=CLAIM_TTL_SECONDS):
                    _claimed[purpose] = db
                    break
            else:
                raise RuntimeError(
                    f"no free Redis database on {SERVER} for {purpose!r}: every database "
                    "holds someone's data or another test run's claim"
                )
        finally:
            control.close()
        _start_renewer()
    url = url_of(_claimed[purpose])
    flush(url)
    return url


# Renews a claim only while it is still this process's: a claim that lapsed and was taken by
# another run must not be taken back (two runs would then flush each other's data).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) and 1 or 0
"""


def _renew_forever() -> None:
    while True:
        time.sleep(RENEW_EVERY_SECONDS)
        with _lock:
            databases = list(_claimed.values())
        try:
            control = _control()
            try:
                for db in databases:
                    key = CLAIM_KEY.format(db)
                    if not control.eval(_RENEW, 1, key, _owner, str(CLAIM_TTL_SECONDS)):
                        print(f"redis_claim: lost the claim on {url_of(db)}", file=sys.stderr)
            finally:
                control.close()
        except redis.RedisError:
            continue  # the next round tries again; a claim outlives two missed renewals


def _start_renewer() -> None:
    global _renewer
    if _renewer is None:
        _renewer = threading.Thread(target=_renew_forever, name="redis-claims", daemon=True)
        _renewer.start()
        atexit.register(release_all)


def release_all() -> None:
    """Flushes and frees every database this process claimed (at exit)."""
    with _lock:
        databases = list(_claimed.values())
        _claimed.clear()
    if not databases:
        return
    try:
        control = _control()
        try:
            for db in databases:
                # Only a database still held: one whose claim lapsed may be another run's now.
                if control.get(CLAIM_KEY.format(db)) == _owner.encode():
                    flush(url_of(db))
                    control.delete(CLAIM_KEY.format(db))
        finally:
            control.close()
    except redis.RedisError:
        pass  # the claims expire by themselves


def redis_url(env_var: str, purpose: str) -> str:
    """The URL named by `env_var` when set (a database the caller may flush), else a claim."""
    explicit = os.environ.get(env_var)
    return explicit if explicit else claim(purpose)
