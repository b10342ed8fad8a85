"""The machine's own report end to end: a real local machine's agent, whose dev server is killed,
restarts it and says so in a `stats` frame; the orchestrator's /metrics counts the restart. And a
hostile `stats` frame on the real gateway is refused and records nothing.

On a real uvicorn server (tests/integration/live.py) with its metrics endpoint, real Redis, and
the local provider running the real agent and Vite (as tests/integration/test_sandbox_agent.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from app.settings import Settings
from pool.core.provider import MachineSpec, MachineState
from pool.providers.local import LocalProvider
from pool.services.metrics_endpoint import Listen
from pool.store.inventory import Inventory, PoolKey
from tests.conftest import fill_pool, free_port
from tests.integration.live import live_server
from tests.integration.test_gateway import MACHINE_TOKEN, Server, _set_tokens, receive_until, send
from tests.integration.test_sandbox_agent import installed_templates  # noqa: F401 (a fixture)
from tests.prom_text import parse, sample

BOOT_TIMEOUT = 40.0
RESTARTS = "preview_machine_devserver_restarts_total"


async def _scrape(metrics_port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
    response.raise_for_status()
    return parse(response.text)[1]


async def _until_metric(
    metrics_port: int, name: str, value: float, timeout: float, **labels: str
) -> None:
    async with asyncio.timeout(timeout):
        while sample(await _scrape(metrics_port), name, **labels) != value:
            await asyncio.sleep(0.2)


def _descendants_running(needle: bytes) -> list[int]:
    """This test process's descendants whose command line holds `needle`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    found = []
    for pid in parents:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and ours(pid):
            found.append(pid)
    return found


@pytest.mark.slow
async def test_a_killed_dev_server_is_restarted_and_counted_in_metrics(
    settings: Settings,
    redis_client: aioredis.Redis,
    installed_templates: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    with live_server(settings, metrics_listen=Listen("127.0.0.1", metrics_port)) as host:
        provider = LocalProvider(
            tmp_path / "machines",
            start_timeout=BOOT_TIMEOUT,
            orchestrator_ws_url=f"ws://{host}/api/sandbox/ws",
        )
        try:
            created = await provider.create(MachineSpec(template="react-web", region="local"))
            # The gateway knows a machine by its record and token, as the pool would write them.
            await Inventory(redis_client).mark_booting(
                created.id, PoolKey("react-web", "local"), created.metadata["token"]
            )
            await provider.wait(created.id, MachineState.STARTED, BOOT_TIMEOUT)
            await _until_metric(
                metrics_port, "preview_sockets_open", 1, BOOT_TIMEOUT, kind="sandbox"
            )
            async with asyncio.timeout(BOOT_TIMEOUT):
                while not (vite := _descendants_running(b"vite.js")):
                    await asyncio.sleep(0.2)
            for pid in vite:
                os.kill(pid, signal.SIGKILL)
            # Sent right after the restart (~0.5 s of backoff), not at the next 15 s tick.
            await _until_metric(metrics_port, RESTARTS, 1, 10.0, machine=created.id)
            samples = await _scrape(metrics_port)
        finally:
            for listed in await provider.list():
                await provider.destroy(listed.id)
            await provider.aclose()
    # A local machine's CPU and memory are the worker's to sample (not running here): the
    # agent's own figures are not a second source for the same series.
    assert sample(samples, "preview_machine_cpu_seconds_total", machine=created.id) is None
    assert sample(samples, "preview_machine_memory_bytes", machine=created.id) is None


def test_a_hostile_stats_frame_is_refused_and_records_nothing(settings: Settings) -> None:
    machine = fill_pool(1)[0]
    _set_tokens([machine], MACHINE_TOKEN)
    metrics_port = free_port()
    with live_server(settings, metrics_listen=Listen("127.0.0.1", metrics_port)) as host:
        with Server(host).agent(machine) as agent:
            send(agent, "hello", machineId=machine, session=None, appliedSeq=0)
            for hostile in (
                {"devserverRestarts": -1},
                {"devserverRestarts": 10**12},
                {"devserverRestarts": "7"},
                {"devserverRestarts": 7, "cpuSeconds": 1.0},
                {"devserverRestarts": 7, "machine": "another-machine"},
            ):
                send(agent, "stats", **hostile)
                assert receive_until(agent, "error")["code"] == "invalid_frame"
            agent.send(
                '{"v":1,"type":"stats","devserverRestarts":7,"cpuSeconds":NaN,"memoryBytes":1}'
            )
            assert receive_until(agent, "error")["code"] == "invalid_frame"
            send(agent, "ping")  # the socket lives on
            assert receive_until(agent, "pong")
            samples = asyncio.run(_scrape(metrics_port))
            assert not [key for key in samples if key[0] == RESTARTS]
            send(agent, "stats", devserverRestarts=2, cpuSeconds=5.5, memoryBytes=1000)
            # Accepted (no error comes back before the pong) and counted.
            send(agent, "ping")
            assert json.loads(agent.recv(timeout=10))["type"] == "pong"
            samples = asyncio.run(_scrape(metrics_port))
    assert sample(samples, RESTARTS, machine=machine) == 2
    refused = sample(
        samples, "preview_frames_refused_total", kind="sandbox", reason="invalid_frame"
    )
    assert refused == 6
