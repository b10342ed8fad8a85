"""The script batcher on the real Redis: calls queued together share one pipeline, replies go
to their own callers, an unknown script is loaded, and nothing is left hanging at stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pool.edits.edit_log import Appended, Change, EditLog
from pool.edits.script_batcher import BatcherClosed, ScriptBatcher
from pool.store.redis_errors import resolved

ECHO = "return ARGV[1]"
FAIL_ON_BAD = "if ARGV[1] == 'bad' then return redis.error_reply('refused') end return ARGV[1]"


@pytest.fixture
async def batcher(redis_client: Redis) -> AsyncIterator[ScriptBatcher]:
    batcher = ScriptBatcher(redis_client, max_batch=8)
    await batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()


async def test_concurrent_calls_share_pipelines_in_order(
    redis_client: Redis, batcher: ScriptBatcher
) -> None:
    append = redis_client.register_script("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    replies = await asyncio.gather(*(batcher.run(append, ["order"], str(i)) for i in range(50)))
    assert sorted(replies) == list(range(1, 51))
    assert await resolved(redis_client.lrange("order", 0, -1)) == [str(i) for i in range(50)]
    # Queued together, in batches of at most 8: a handful of pipelines, not 50 round trips.
    assert replies == list(range(1, 51))
    assert batcher.pipelines_sent <= 8


async def test_an_error_reply_goes_to_its_caller_only(
    redis_client: Redis, batcher: ScriptBatcher
) -> None:
    script = redis_client.register_script(FAIL_ON_BAD)
    results = await asyncio.gather(
        batcher.run(script, [], "a"),
        batcher.run(script, [], "bad"),
        batcher.run(script, [], "c"),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ResponseError) and "refused" in str(results[1])


async def test_a_script_redis_does_not_know_is_loaded_and_sent_again(
    redis_client: Redis, batcher: ScriptBatcher
) -> None:
    # After a restart or a SCRIPT FLUSH every script is one Redis does not know. The test does
    # not flush: SCRIPT FLUSH empties the cache of the whole server, and another test run on
    # this host then failed its own script calls. A script nobody has loaded yet (unique text)
    # gets the same NOSCRIPT answer.
    script = redis_client.register_script(f"-- {uuid.uuid4().hex}\n{ECHO}")
    assert await redis_client.script_exists(script.sha) == [False]
    # gather() gives a list; typeshed types it as a tuple.
    both = list(await asyncio.gather(batcher.run(script, [], "x"), batcher.run(script, [], "y")))
    assert both == ["x", "y"]
    assert await redis_client.script_exists(script.sha) == [True]


async def test_calls_after_stop_are_refused(redis_client: Redis) -> None:
    batcher = ScriptBatcher(redis_client)
    script = redis_client.register_script(ECHO)
    with pytest.raises(BatcherClosed):
        await batcher.run(script, [], "not started")
    await batcher.start()
    assert await batcher.run(script, [], "ok") == "ok"
    await batcher.stop()
    with pytest.raises(BatcherClosed):
        await batcher.run(script, [], "stopped")


async def test_the_edit_log_appends_through_the_batcher(
    redis_client: Redis, batcher: ScriptBatcher
) -> None:
    edits = EditLog(redis_client, batcher=batcher)
    outcomes = await asyncio.gather(
        *(edits.append(f"s{i}", 1, [Change("a.js", str(i))]) for i in range(20))
    )
    assert outcomes == [Appended(1, duplicate=False)] * 20
    assert await edits.report_applied("s3", 1, await edits.epoch("s3")) == 1
    assert await edits.applied("s3") == 1
    assert (await edits.snapshot("s7")).files == {"a.js": "7"}


async def test_a_connection_redis_closed_is_replaced_without_failing_a_call(
    redis_client: Redis, batcher: ScriptBatcher
) -> None:
    # A Redis restart, a failover or a server-side idle timeout closes the batcher's own
    # connection while it waits; nothing checks it out of a pool, so the next batch finds out.
    script = redis_client.register_script(ECHO)
    assert await batcher.run(script, [], "before") == "before"
    for _ in range(3):
        assert await _close_this_databases_connections(redis_client) >= 1  # the batcher's
        assert await batcher.run(script, [], "after a kill") == "after a kill"


async def _close_this_databases_connections(redis_client: Redis) -> int:
    """What a restart does to the connections of this test's database, and to nobody else's
    (`CLIENT KILL TYPE normal` would close every other test run's connections too). The
    connection sending the kills is spared. Returns how many were closed."""
    db = int(redis_client.connection_pool.connection_kwargs.get("db", 0))
    closed = 0
    for client in await redis_client.client_list():
        if int(client["db"]) == db:
            closed += int(await redis_client.client_kill_filter(_id=client["id"], skipme=True))
    return closed


async def test_applied_reports_queued_without_waiting_keep_their_order(
    redis_client: Redis, batcher: ScriptBatcher
) -> None:
    edits = EditLog(redis_client, batcher=batcher)
    for seq in range(1, 21):
        await edits.append("s1", seq, [Change("a.js", str(seq))])
    epoch = await edits.epoch("s1")
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(edits.keys.session_channel("s1"))
        reports = [edits.report_applied_soon("s1", seq, epoch) for seq in range(1, 21)]
        await asyncio.gather(*reports)
        heard = []
        for _ in range(100):  # the subscribe confirmation comes back as None
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                heard.append(message["data"])
            if len(heard) == 20:
                break
    assert heard == [f'{{"kind":"applied","seq":{seq}}}' for seq in range(1, 21)]
    assert await edits.applied("s1") == 20
    with pytest.raises(RuntimeError):
        EditLog(redis_client).report_applied_soon("s1", 21, epoch)
