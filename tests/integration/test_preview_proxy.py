"""Preview routing by Host against a real local machine (the placeholder server)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from pool.core.provider import MachineSpec, MachineState
from pool.providers.local import LocalProvider
from pool.store.inventory import Inventory, PoolKey
from tests.conftest import REDIS_URL, make_user


@pytest.fixture
def machine(tmp_path: Path, settings: Settings) -> Iterator[str]:
    async def boot(provider: LocalProvider) -> str:
        created = await provider.create(MachineSpec("react-web", "local"))
        ready = await provider.wait(created.id, MachineState.STARTED, 15)
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            inventory = Inventory(client)
            await inventory.mark_booting(
                ready.id, PoolKey("react-web", "local"), ready.metadata["token"]
            )
            await inventory.make_ready(ready.id, PoolKey("react-web", "local"), ready.address)
        finally:
            await client.aclose()
        (Path(ready.metadata["workspace"]) / "hello.txt").write_text("from the machine")
        return ready.id

    async def destroy(provider: LocalProvider, machine_id: str) -> None:
        await provider.destroy(machine_id)
        await provider.aclose()

    provider = LocalProvider(tmp_path / "machines")
    machine_id = asyncio.run(boot(provider))
    yield machine_id
    asyncio.run(destroy(provider, machine_id))


def _lease(client: TestClient, settings: Settings) -> dict[str, Any]:
    user = make_user(settings.database_url or "")
    response = client.post(
        "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_preview_origin_serves_the_machine_with_a_cookie(
    settings: Settings, machine: str
) -> None:
    with TestClient(create_app(settings), follow_redirects=False) as client:
        session = _lease(client, settings)
        assert session["previewUrl"].startswith(f"http://{session['id']}.preview.localhost:8000/")
        host = {"host": f"{session['id']}.preview.localhost:8000"}

        assert client.get("/hello.txt", headers=host).status_code == 401

        first = client.get(f"/hello.txt?token={session['token']}", headers=host)
        assert first.status_code == 302
        assert first.headers["location"] == "/hello.txt"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and cookie.startswith("preview_token=")

        client.cookies.set("preview_token", session["token"])
        served = client.get("/hello.txt", headers=host)
        assert served.status_code == 200 and served.text == "from the machine"
        # The API's own routes are not reachable on a preview origin.
        assert client.get("/api/openapi.json", headers=host).status_code == 404


def test_another_sessions_token_is_forbidden(settings: Settings, machine: str) -> None:
    with TestClient(create_app(settings), follow_redirects=False) as client:
        session = _lease(client, settings)
        other = "00000000-0000-4000-8000-000000000001"
        response = client.get(
            f"/?token={session['token']}", headers={"host": f"{other}.preview.localhost:8000"}
        )
        assert response.status_code == 403


def test_a_request_waits_for_a_machine_record_redis_lost(settings: Settings, machine: str) -> None:
    # Redis lost the machine's record; reconcile rebuilds it a moment later. A module fetch of
    # the preview meanwhile (Vite never retries one) waits for it instead of failing.
    with TestClient(create_app(settings), follow_redirects=False) as client:
        session = _lease(client, settings)
        host = {"host": f"{session['id']}.preview.localhost:8000"}
        client.cookies.set("preview_token", session["token"])
        assert client.get("/hello.txt", headers=host).status_code == 200

        async def lose() -> dict[str, str]:
            redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                record: dict[str, str] = await redis.hgetall(f"po:m:{machine}")
                await redis.delete(f"po:m:{machine}")
                return record
            finally:
                await redis.aclose()

        async def restore(record: dict[str, str]) -> None:
            await asyncio.sleep(1.0)
            redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                await redis.hset(f"po:m:{machine}", mapping=record)
            finally:
                await redis.aclose()

        record = asyncio.run(lose())
        time.sleep(2.1)  # past the proxy's 2 s cache of the address
        rebuilding = threading.Thread(target=lambda: asyncio.run(restore(record)))
        rebuilding.start()
        started = time.monotonic()
        served = client.get("/hello.txt", headers=host)
        waited = time.monotonic() - started
        rebuilding.join()
        assert served.status_code == 200 and served.text == "from the machine"
        assert 0.8 < waited < 5.0
