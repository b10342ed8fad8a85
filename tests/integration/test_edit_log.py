"""The edit log on the real Redis: sequence checks, resend recognition, snapshot with
tombstones, trimming fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.settings import Settings
from pool.edits.edit_log import Appended, Change, Conflict, EditLog
from tests.conftest import REDIS_URL


@pytest.fixture
async def edits(settings: Settings) -> AsyncIterator[EditLog]:
    client: Redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield EditLog(client)
    finally:
        await client.aclose()


async def test_snapshot_keeps_files_and_deletions(edits: EditLog) -> None:
    assert await edits.append(
        "s1", 1, [Change("src/App.jsx", "a"), Change("b.js", "b")]
    ) == Appended(1, duplicate=False)
    assert await edits.append(
        "s1", 2, [Change("b.js", None), Change("index.html", None)]
    ) == Appended(2, duplicate=False)
    snapshot = await edits.snapshot("s1")
    assert snapshot.seq == 2
    assert snapshot.files == {"src/App.jsx": "a"}
    assert snapshot.deleted == ["b.js", "index.html"]  # a template file deleted is remembered
    await edits.append("s1", 3, [Change("index.html", "back")])
    snapshot = await edits.snapshot("s1")
    assert snapshot.files["index.html"] == "back" and snapshot.deleted == ["b.js"]


async def test_sequence_rules(edits: EditLog) -> None:
    assert await edits.append("s2", 2, [Change("a", "x")]) == Conflict(0)
    await edits.append("s2", 1, [Change("a", "x")])
    assert await edits.append("s2", 1, [Change("a", "x")]) == Appended(1, True)
    assert await edits.append("s2", 1, [Change("a", "y")]) == Conflict(1)
    patches = await edits.since("s2", 0)
    assert patches is not None and [p.seq for p in patches] == [1]
    assert await edits.since("s2", 1) == []
