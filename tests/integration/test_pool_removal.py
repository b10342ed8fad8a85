"""Operators remove a pool (issue 9: "operators can remove a pool"), including one whose region
the configuration no longer names; everyone else cannot, and bad names change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from arq.connections import RedisSettings, create_pool
from arq.jobs import JobDef
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.conftest import claimed_redis_url, fill_pool, make_user


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"preview_regions": "ams"})
    with TestClient(create_app(tuned)) as test_client:
        yield test_client


def _target(settings: Settings, region: str) -> tuple[int, ...] | None:
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        return conn.execute(
            "SELECT min_size, max_size, suspended_min, suspended_max, stopped_min, stopped_max"
            " FROM pool_targets WHERE template = 'react-web' AND region = %s",
            (region,),
        ).fetchone()


def test_an_operator_removes_a_pool_and_it_drains(client: TestClient, settings: Settings) -> None:
    admin = make_user(settings.database_url or "", admin=True)
    set_bounds = client.put(
        "/api/admin/pool/react-web/ams", json={"min": 2, "max": 3}, headers=admin.headers
    )
    assert set_bounds.status_code == 200, set_bounds.text
    machines = fill_pool(2, region="ams")

    removed = client.delete("/api/admin/pool/react-web/ams", headers=admin.headers)

    assert removed.status_code == 202, removed.text
    assert removed.json() == {
        "template": "react-web",
        "region": "ams",
        "min": 0,
        "max": 0,
        "removed": True,
    }
    assert _target(settings, "ams") == (0, 0, 0, 0, 0, 0)
    queued = [(j.function, j.args) for j in asyncio.run(_queued_jobs())]
    assert ("resize", ("react-web", "ams")) in queued
    # That resize drains the pool to its new bounds (0): tests/integration/test_worker_jobs.py
    # checks that a resize destroys what exceeds a lowered max.
    assert len(machines) == 2


async def _queued_jobs() -> list[JobDef]:
    pool = await create_pool(RedisSettings.from_dsn(claimed_redis_url()))
    try:
        return await pool.queued_jobs()
    finally:
        await pool.aclose()


def test_a_pool_of_a_region_no_longer_configured_can_be_removed(
    client: TestClient, settings: Settings
) -> None:
    admin = make_user(settings.database_url or "", admin=True)
    fill_pool(1, region="old")  # its region left PREVIEW_REGIONS; its machines did not
    removed = client.delete("/api/admin/pool/react-web/old", headers=admin.headers)
    assert removed.status_code == 202, removed.text
    assert _target(settings, "old") == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/admin/pool/react-web/nowhere", 404, "not_found"),
        ("/api/admin/pool/React/ams", 400, "invalid_pool"),
        ("/api/admin/pool/react-web/a%0Ab", 400, "invalid_pool"),
    ],
)
def test_bad_removals_change_nothing(
    client: TestClient, settings: Settings, path: str, status: int, code: str
) -> None:
    admin = make_user(settings.database_url or "", admin=True)
    answer = client.delete(path, headers=admin.headers)
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert _target(settings, "nowhere") is None


def test_only_operators_remove_pools(client: TestClient, settings: Settings) -> None:
    fill_pool(1, region="ams")
    user = make_user(settings.database_url or "")
    assert client.delete("/api/admin/pool/react-web/ams", headers=user.headers).status_code == 403
    assert client.delete("/api/admin/pool/react-web/ams").status_code == 401
    assert _target(settings, "ams") is None
