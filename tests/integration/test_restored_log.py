"""A session's files through its end and into a new session's log, on the real Redis: what
announce_end takes is the snapshot hash verbatim, and start_log_from makes it a new log that
editors and agents read as they read any other (a snapshot at seq 1, patches from 2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.settings import Settings
from pool.edits.edit_log import (
    Appended,
    Change,
    Conflict,
    EditLog,
    EditLogLimits,
    OverBudget,
    TooLarge,
    announce_end,
)
from pool.edits.restored_log import (
    RESTORED_SEQ,
    LogExists,
    Seeded,
    restored_seq,
    start_log_from,
)
from pool.services.metrics import NullMetrics
from pool.services.project_files import hydrate_if_restored
from pool.store.redis_errors import resolved
from tests.conftest import REDIS_URL

# Values as the snapshot hash may hold them, none of them interpreted on the way: a text file,
# a deletion's tombstone, an empty file, and a string standing for however the edit log stores
# a binary file (opaque here).
VALUES = {
    "src/App.jsx": "export default () => 'kept ✓'\n",
    "index.html": "\x00",
    "empty.txt": "",
    "assets/logo.png": "b64:iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg",
}


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_an_ended_logs_values_start_a_new_log_verbatim(redis: Redis) -> None:
    edits = EditLog(redis)
    await edits.append("old", 1, [Change(p, None if v == "\x00" else v) for p, v in VALUES.items()])
    await edits.append("old", 2, [Change("src/App.jsx", VALUES["src/App.jsx"])])

    ended = await announce_end(redis, "old", "deleted", "ended")

    assert ended.seq == 2
    assert ended.values == VALUES
    assert await redis.exists("po:snap:old") == 0  # the end still drops them from Redis
    # A second announce (a reconcile that found the end unannounced) has nothing left to give.
    assert (await announce_end(redis, "old", "deleted", "ended")).values == {}

    seeded = await start_log_from(redis, "new", ended.values, user="u1")

    assert seeded == Seeded(RESTORED_SEQ, sum(len(v.encode()) for v in VALUES.values()))
    assert await resolved(redis.hgetall("po:snap:new")) == VALUES
    assert await restored_seq(redis, "new") == RESTORED_SEQ
    assert await restored_seq(redis, "old") == 0
    snapshot = await edits.snapshot("new")
    assert snapshot.seq == RESTORED_SEQ and snapshot.epoch
    assert snapshot.deleted == ["index.html"]
    assert snapshot.files == {k: v for k, v in VALUES.items() if v != "\x00"}
    # Nothing in the stream: an editor or agent at 0 must take the snapshot.
    assert await edits.since("new", 0) is None
    # The next patch is seq 2, under the new log's epoch; seq 1 is taken.
    assert await edits.append("new", 1, [Change("a", "x")]) == Conflict(RESTORED_SEQ)
    assert await edits.append("new", 2, [Change("a", "x")], epoch=snapshot.epoch) == Appended(
        2, duplicate=False
    )
    # The restored bytes count against the user's budget as appended ones would.
    held = int(await resolved(redis.hget("po:editbytes:u1", "new")) or 0)
    assert held >= seeded.bytes


async def test_a_log_that_exists_is_never_overwritten(redis: Redis) -> None:
    edits = EditLog(redis)
    await edits.append("s", 1, [Change("a", "mine")])

    assert await start_log_from(redis, "s", {"a": "other"}) == LogExists()
    assert (await edits.snapshot("s")).files == {"a": "mine"}


async def test_files_over_the_caps_or_the_budget_start_nothing(redis: Redis) -> None:
    small = EditLogLimits(snapshot_bytes=4, snapshot_files=2, user_budget_bytes=10)
    assert await start_log_from(redis, "s1", {"a": "12345"}, limits=small) == TooLarge(5)
    assert await start_log_from(redis, "s1", {"a": "1", "b": "2", "c": "3"}, limits=small) == (
        TooLarge(3)
    )
    # The user's other live session holds 8 bytes already: 8 + 4 > 10.
    await resolved(redis.hset("po:editbytes:u1", "other", "8"))
    await resolved(redis.hset("po:snapmeta:other", "epoch", "e"))
    assert await start_log_from(redis, "s1", {"a": "1234"}, user="u1", limits=small) == (
        OverBudget(12)
    )
    assert await redis.exists("po:snap:s1", "po:snapmeta:s1") == 0
    # An ended session's share counts for nothing.
    await resolved(redis.hset("po:snapmeta:other", "ended", "deleted"))
    assert await start_log_from(redis, "s1", {"a": "1234"}, user="u1", limits=small) == (
        Seeded(RESTORED_SEQ, 4)
    )


async def test_a_booting_session_waits_for_its_restored_files_to_be_applied(redis: Redis) -> None:
    edits = EditLog(redis)
    metrics = NullMetrics()
    # A log not started from kept files has nothing to wait for.
    assert await hydrate_if_restored(redis, metrics, "plain", "m1", timeout=0.01)

    await start_log_from(redis, "s", {"src/App.jsx": "kept"})
    epoch = await edits.epoch("s")
    pubsub = redis.pubsub()
    await pubsub.subscribe("po:ch:machine:m1")
    try:
        waiting = asyncio.create_task(hydrate_if_restored(redis, metrics, "s", "m1", timeout=10.0))
        # The machine's channel hears the hydrate (the gateway relays it to the agent) ...
        hydrate = await _next_message(pubsub)
        assert (hydrate["kind"], hydrate["seq"], hydrate["epoch"]) == ("hydrate", 1, epoch)
        assert hydrate["files"] == {"src/App.jsx": "kept"}
        assert not waiting.done()
        # ... and the wait ends once the agent's `applied` for it is recorded.
        await edits.report_applied("s", RESTORED_SEQ, epoch)
        assert await asyncio.wait_for(waiting, 5.0) is True
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5

    await start_log_from(redis, "slow", {"a": "1"})
    assert await hydrate_if_restored(redis, metrics, "slow", "m2", timeout=0.2) is False
    assert metrics.project_files_total.labels("hydrate_timeout").value == 1


async def _next_message(pubsub: PubSub) -> dict[str, Any]:
    for _ in range(100):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            decoded: dict[str, Any] = json.loads(message["data"])
            return decoded
    raise AssertionError("nothing was published on the machine's channel")
