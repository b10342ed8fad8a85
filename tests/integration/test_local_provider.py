"""LocalProvider against real processes: spawned placeholders, real ports, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pool.core.errors import MachineNotFound, ProviderError
from pool.core.provider import Machine, MachineSpec, MachineState
from pool.providers import local_cgroup
from pool.providers.local import LocalProvider

SPEC = MachineSpec(template="react-vite", region="local")
BOOT_TIMEOUT = 15.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    provider = LocalProvider(tmp_path)
    try:
        yield provider
    finally:
        # Through list(), so machines made by other instances on tmp_path go too.
        for machine in await provider.list():
            await provider.destroy(machine.id)
        await provider.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        yield client


async def started(provider: LocalProvider) -> Machine:
    machine = await provider.create(SPEC)
    return await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)


def pid_of(machine: Machine) -> int:
    return int(machine.metadata["pid"])


def process_exists(pid: int) -> bool:
    """True while the pid exists at all, zombies included: a zombie left behind is a bug."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def eventually_state(
    provider: LocalProvider, machine_id: str, state: MachineState, timeout: float = 5.0
) -> Machine:
    async with asyncio.timeout(timeout):
        while (machine := await provider.get(machine_id)).state is not state:
            await asyncio.sleep(0.05)
    return machine


async def test_create_then_wait_started_is_healthy_and_serves(
    provider: LocalProvider, http: httpx.AsyncClient
) -> None:
    created = await provider.create(SPEC)
    assert created.id.startswith("loc-") and len(created.id) == 16
    assert created.state is MachineState.STARTING
    assert created.address.startswith("http://127.0.0.1:")

    machine = await provider.wait(created.id, MachineState.STARTED, BOOT_TIMEOUT)

    assert machine.healthy
    assert (machine.template, machine.region) == ("react-vite", "local")
    health = await http.get(f"{machine.address}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ready", "machine": machine.id}
    root = await http.get(machine.address)
    assert "preview machine ready" in root.text
    (Path(machine.metadata["workspace"]) / "bundle.js").write_text("console.log(1)")
    assert (await http.get(f"{machine.address}/bundle.js")).text == "console.log(1)"


async def test_machines_get_distinct_ports_and_workspaces(provider: LocalProvider) -> None:
    first, second = await asyncio.gather(started(provider), started(provider))

    assert first.id != second.id
    assert first.address != second.address
    assert first.metadata["workspace"] != second.metadata["workspace"]
    assert first.metadata["token"] != second.metadata["token"]


async def test_another_instance_sees_and_controls_the_machines(
    provider: LocalProvider, tmp_path: Path
) -> None:
    machine = await started(provider)
    other = LocalProvider(tmp_path)
    try:
        assert [m.id for m in await other.list()] == [machine.id]
        seen = await other.get(machine.id)
        assert seen.state is MachineState.STARTED and seen.healthy
        assert seen.address == machine.address

        await other.stop(machine.id)

        assert (await provider.get(machine.id)).state is MachineState.STOPPED
    finally:
        await other.aclose()


async def test_another_process_destroys_a_machine_we_spawned(
    provider: LocalProvider, tmp_path: Path
) -> None:
    machine = await started(provider)
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from pool.providers.local import LocalProvider\n"
        "async def main() -> None:\n"
        "    provider = LocalProvider(Path(sys.argv[1]))\n"
        "    print(','.join(m.id for m in await provider.list()))\n"
        "    await provider.destroy(sys.argv[2])\n"
        "    await provider.aclose()\n"
        "asyncio.run(main())\n"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, str(tmp_path), machine.id],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == machine.id
    assert await provider.list() == []  # also reaps the child the other process killed
    assert not process_exists(pid_of(machine))


async def test_reset_wipes_the_workspace_and_comes_back_healthy(
    provider: LocalProvider, http: httpx.AsyncClient
) -> None:
    machine = await started(provider)
    leftover = Path(machine.metadata["workspace"]) / "secret.txt"
    leftover.write_text("previous session")
    assert (await http.get(f"{machine.address}/secret.txt")).status_code == 200

    reset = await provider.reset(machine.id)
    ready = await provider.wait(reset.id, MachineState.STARTED, BOOT_TIMEOUT)

    assert ready.healthy
    assert not leftover.exists()
    assert list(Path(ready.metadata["workspace"]).iterdir()) == []
    assert (await http.get(f"{ready.address}/secret.txt")).status_code == 404
    assert ready.metadata["token"] != machine.metadata["token"]
    assert not process_exists(pid_of(machine))


async def test_stop_then_start(provider: LocalProvider) -> None:
    machine = await started(provider)

    stopped = await provider.stop(machine.id)
    assert stopped.state is MachineState.STOPPED and not stopped.healthy
    assert not process_exists(pid_of(machine))
    assert (await provider.stop(machine.id)).state is MachineState.STOPPED
    assert (await provider.get(machine.id)).state is MachineState.STOPPED

    await provider.start(machine.id)
    restarted = await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)
    assert restarted.healthy
    again = await provider.start(machine.id)
    assert again.state is MachineState.STARTED
    assert pid_of(again) == pid_of(restarted)


async def test_destroy_is_idempotent_and_kills_the_process(provider: LocalProvider) -> None:
    machine = await started(provider)

    await provider.destroy(machine.id)
    await provider.destroy(machine.id)

    assert not process_exists(pid_of(machine))
    assert await provider.list() == []
    with pytest.raises(MachineNotFound):
        await provider.get(machine.id)
    gone = await provider.wait(machine.id, MachineState.DESTROYED, 1.0)
    assert gone.state is MachineState.DESTROYED


@pytest.mark.parametrize("method", ["get", "start", "stop", "reset"])
async def test_unknown_machine_is_not_found(provider: LocalProvider, method: str) -> None:
    with pytest.raises(MachineNotFound):
        await getattr(provider, method)("loc-000000000000")


async def test_machine_killed_from_outside_reads_as_failed(provider: LocalProvider) -> None:
    machine = await started(provider)

    os.kill(pid_of(machine), signal.SIGKILL)

    failed = await eventually_state(provider, machine.id, MachineState.FAILED)
    assert not failed.healthy
    with pytest.raises(ProviderError, match="failed to start"):
        await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)
    await provider.start(machine.id)
    assert (await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)).healthy


async def test_wait_reports_a_machine_that_dies_on_boot(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path, python="/bin/false")
    try:
        machine = await provider.create(SPEC)
        with pytest.raises(ProviderError, match=machine.id):
            await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)
        await provider.destroy(machine.id)
    finally:
        await provider.aclose()


async def test_wait_times_out_on_a_stopped_machine(provider: LocalProvider) -> None:
    machine = await started(provider)
    await provider.stop(machine.id)

    with pytest.raises(ProviderError, match=r"after 0\.3s"):
        await provider.wait(machine.id, MachineState.STARTED, 0.3)


async def test_a_machine_gets_its_cgroup_limits_until_destroyed(tmp_path: Path) -> None:
    layout = local_cgroup.detect()
    assert layout is not None and not layout.missing, "this host must allow cgroup limits"
    provider = LocalProvider(tmp_path, pids_max=77)
    try:
        machine = await provider.create(MachineSpec("react-vite", "local", cpus=2, memory_mb=300))
        await provider.wait(machine.id, MachineState.STARTED, BOOT_TIMEOUT)
        directories = {c: parent / machine.id for c, parent in layout.parents.items()}
        expected = {
            "pids": [("pids.max", "77")],
            "memory": [("memory.max" if layout.version == 2 else "memory.limit_in_bytes",
                        str(300 * 1024 * 1024))],
            "cpu": [("cpu.max", "200000 100000")] if layout.version == 2
            else [("cpu.cfs_quota_us", "200000")],
        }  # fmt: skip
        for controller, files in expected.items():
            for name, value in files:
                assert (directories[controller] / name).read_text().strip() == value
        # The machine's processes are in it, the supervisor that made it is not.
        members = (directories["pids"] / "cgroup.procs").read_text().split()
        assert members and str(pid_of(machine)) not in members

        await provider.destroy(machine.id)

        assert not any(directory.exists() for directory in directories.values())
    finally:
        await provider.aclose()
