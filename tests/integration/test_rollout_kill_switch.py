"""The kill switch across two real `web` processes: turned on through one, it sends every
editor to Appetize on both within the flag cache's bound (at once, over Redis pub/sub), and a
change that nobody announced (pub/sub lost it) still reaches both within the TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.auth import mint_hs256_token
from app.settings import Settings
from tests.conftest import JWT_SECRET, User, make_user
from tests.integration.helpers import web_processes
from tests.integration.test_rollout_flags import reset_flags

pytestmark = pytest.mark.slow

CACHE_SECONDS = 5.0  # the default bound; the kill switch must beat it by far
# What "at once" allows here: a publish, a message and a reload, on a loaded CI machine.
AT_ONCE_SECONDS = 1.0


@pytest.fixture
def web_urls(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    reset_flags(settings.database_url or "")
    extra = {"PREVIEW_FLAGS_CACHE_SECONDS": str(CACHE_SECONDS), "PREVIEW_METRICS_PORT": "0"}
    with web_processes(settings.database_url or "", tmp_path, 2, extra) as urls:
        yield urls


def _backends(http: httpx.Client, urls: list[str], users: list[User]) -> set[tuple[str, str]]:
    """(backend, reason) of every user on every process."""
    seen = set()
    for url in urls:
        for user in users:
            answer = http.get(
                f"{url}/api/preview/backend",
                params={"projectId": str(user.project_id)},
                headers=user.headers,
            )
            assert answer.status_code == 200, answer.text
            seen.add((answer.json()["backend"], answer.json()["reason"]))
    return seen


def _until(
    http: httpx.Client,
    urls: list[str],
    users: list[User],
    wanted: set[tuple[str, str]],
    within: float,
) -> float:
    """Seconds until every process answers `wanted` for every user; fails after `within`."""
    started = time.monotonic()
    while (seen := _backends(http, urls, users)) != wanted:
        elapsed = time.monotonic() - started
        assert elapsed < within, f"after {elapsed:.2f}s the processes still answer {seen}"
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_kill_switch_reaches_every_web_process_within_the_caches_bound(
    settings: Settings, web_urls: list[str]
) -> None:
    database = settings.database_url or ""
    admin = make_user(database, admin=True)
    admin_headers = {
        "Authorization": f"Bearer {mint_hs256_token(JWT_SECRET, user_id=admin.id, admin=True)}"
    }
    users = [make_user(database) for _ in range(5)]
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        put = http.put(
            f"{web_urls[0]}/api/admin/flags/global", json={"percentage": 100}, headers=admin_headers
        )
        assert put.status_code == 200, put.text
        # Both processes answer the new system, and have the flags cached.
        _until(http, web_urls, users, {("local", "percentage")}, CACHE_SECONDS + 1)

        put = http.put(
            f"{web_urls[0]}/api/admin/flags/global",
            json={"killSwitch": True},
            headers=admin_headers,
        )
        assert put.status_code == 200, put.text
        took = _until(http, web_urls, users, {("appetize", "kill_switch")}, AT_ONCE_SECONDS)
        assert took < CACHE_SECONDS

        # Off again straight in Postgres: no announcement, as when pub/sub is down. The TTL
        # alone brings both processes back.
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE preview_rollout SET kill_switch = false")
        _until(http, web_urls, users, {("local", "percentage")}, CACHE_SECONDS + 0.5)
