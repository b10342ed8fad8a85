"""The realtime hub on real Redis: envelopes are parsed once, as they arrive, and a message that
is no envelope of ours is logged and dropped before any socket sees it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.realtime.hub import Hub
from pool.edits.envelopes import (
    AssignEnvelope,
    IdleWarningEnvelope,
    PatchEnvelope,
    encode_envelope,
)

MALFORMED = [
    "not json",
    '{"kind": "nope"}',  # no such kind
    '{"seq": 1}',  # no kind
    "[1, 2]",
    '{"kind": "ended", "reason": "idle"}',  # no status
    '{"kind": "patch", "seq": "three", "changes": []}',
    '{"kind": "idleWarning", "secondsLeft": null}',
]


async def _until_subscribed(redis: Redis, channel: str) -> None:
    """Pub/sub drops what is published before the SUBSCRIBE lands: wait for it."""
    for _ in range(200):
        [(_, count)] = await redis.pubsub_numsub(channel)
        if count > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nobody subscribed to {channel}")


@pytest.fixture
async def hub(redis_client: Redis) -> AsyncIterator[Hub]:
    # Channels are global to the Redis server, not per database: a prefix of this test's own.
    started = Hub(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_malformed_envelope_is_logged_and_dropped(
    hub: Hub, redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    channel = f"test-{uuid.uuid4().hex}:ch:session:s1"
    warning = IdleWarningEnvelope(secondsLeft=30)
    with caplog.at_level(logging.WARNING, logger="app.realtime.hub"):
        async with hub.subscribe(channel) as queue:
            await _until_subscribed(redis_client, channel)
            for message in MALFORMED:
                await redis_client.publish(channel, message)
            await redis_client.publish(channel, encode_envelope(warning))
            # One subscription delivers in order: the good one comes after every bad one.
            delivered = await asyncio.wait_for(queue.get(), timeout=5)
            assert delivered == warning
            assert queue.empty()
    dropped = [r for r in caplog.records if "malformed pub/sub message" in r.getMessage()]
    assert len(dropped) == len(MALFORMED)
    assert all(channel in r.getMessage() for r in dropped)


async def test_each_listener_hears_the_typed_envelopes_its_filter_lets_through(
    hub: Hub, redis_client: Redis
) -> None:
    channel = f"test-{uuid.uuid4().hex}:ch:session:s1"
    patch = PatchEnvelope(
        epoch="e1", seq=1, changes=({"path": "a.js", "content": "1"},), origin="me"
    )

    def not_mine(envelope: object) -> bool:
        return not (isinstance(envelope, PatchEnvelope) and envelope.origin == "me")

    async with (
        hub.subscribe(channel) as everything,
        hub.subscribe(channel, accept=not_mine) as mine,
    ):
        await _until_subscribed(redis_client, channel)
        await redis_client.publish(channel, encode_envelope(patch))
        # As promote.lua writes it (cjson: any key order).
        await redis_client.publish(channel, '{"session":"s1","kind":"assign"}')
        assert await asyncio.wait_for(everything.get(), timeout=5) == patch
        assert await asyncio.wait_for(everything.get(), timeout=5) == AssignEnvelope(session="s1")
        assert await asyncio.wait_for(mine.get(), timeout=5) == AssignEnvelope(session="s1")
        assert mine.empty()
