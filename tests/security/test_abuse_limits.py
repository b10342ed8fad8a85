"""Findings 8 and 9 of the hardening review, as an attacker with a valid account would try them:
inventing region names to make the service keep warm pools (and boot machines) for them, and
growing one session's edit stream without bound in a Redis that never evicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from pool.edits.edit_log import Change, EditLog, EditLogLimits
from pool.store.keys import DEFAULT_PREFIX
from pool.store.redis_errors import resolved
from tests.conftest import REDIS_URL, fill_pool, make_user


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _pool_keys(region: str) -> list[str]:
    async def scan() -> list[str]:
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            return [key async for key in redis.scan_iter(f"{DEFAULT_PREFIX}*{region}*")]
        finally:
            await redis.aclose()

    return asyncio.run(scan())


@pytest.mark.parametrize("region", ["atlantis", "fra", "ams ", "LOCAL", "x" * 64])
def test_an_invented_region_is_refused_and_creates_no_pool(
    client: TestClient, settings: Settings, region: str
) -> None:
    fill_pool(1)
    user = make_user(settings.database_url or "")
    answer = client.post(
        "/api/preview/sessions",
        json={"projectId": str(user.project_id), "region": region},
        headers=user.headers,
    )
    assert answer.status_code == 400, answer.text
    # Not a region name at all (invalid_body), or one the configuration does not list.
    assert answer.json()["error"] in ("unknown_region", "invalid_body")
    assert _pool_keys(region.strip() or region) == []


async def test_a_sessions_edit_stream_is_bounded_in_bytes(redis_client: aioredis.Redis) -> None:
    # 60 patches of 2 x 500 KB once made a 73 MB stream (the cap was entries only).
    limits = EditLogLimits(stream_bytes=2 * 1024 * 1024)
    edits = EditLog(redis_client, limits=limits)
    big = "x" * 500_000
    for seq in range(1, 61):
        changes = [Change("a.txt", big + str(seq)), Change("b.txt", big + str(seq))]
        outcome = await edits.append("s1", seq, changes)
        assert getattr(outcome, "seq", None) == seq, outcome
    stream = f"{DEFAULT_PREFIX}edits:s1"
    entries: list[Any] = await redis_client.xrange(stream)
    held = sum(len(fields["changes"]) for _, fields in entries)
    assert held <= limits.stream_bytes
    assert int(str(entries[-1][0]).split("-")[0]) == 60  # the newest is kept
    meta = await resolved(redis_client.hgetall(f"{DEFAULT_PREFIX}snapmeta:s1"))
    assert int(meta["stream_bytes"]) == held
    # An editor that missed the trimmed part gets the snapshot instead.
    assert await edits.since("s1", 0) is None
    assert json.loads(entries[-1][1]["changes"])[0]["path"] == "a.txt"


async def test_a_users_budget_counts_only_live_logs(redis_client: aioredis.Redis) -> None:
    edits = EditLog(redis_client, limits=EditLogLimits(user_budget_bytes=1024 * 1024))
    big = "x" * 300_000  # snapshot + stream: ~600 KB per session
    first = await edits.append("s1", 1, [Change("a", big)], user="u1")
    assert getattr(first, "seq", None) == 1
    refused = await edits.append("s2", 1, [Change("a", big)], user="u1")
    assert type(refused).__name__ == "OverBudget"
    # s1's end never reached Redis and its log expired: its entry no longer counts (and goes).
    await redis_client.delete(f"{DEFAULT_PREFIX}snapmeta:s1")
    second = await edits.append("s2", 1, [Change("a", big)], user="u1")
    assert getattr(second, "seq", None) == 1
    assert await resolved(redis_client.hkeys(f"{DEFAULT_PREFIX}editbytes:u1")) == ["s2"]
