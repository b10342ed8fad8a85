"""A worker process for tests/faults/test_stuck_states.py: the supervised worker that the
`worker` command runs (workers.supervisor.run_worker), on local machines, with small bounds.

    python -m tests.faults.stuck_worker CONFIG.json

CONFIG.json holds database_url, redis_url, base_dir, pool_min, pool_max, job_timeout,
reconcile_interval, orphan_grace, and optionally:

- `python`: the interpreter machines are started with (a wrapper that fails makes a broken
  template; `confined`: false runs them outside the sandbox, which could not see the wrapper),
  and `backoff`: [first, max] seconds of the create backoff;
- `step`, `hold`, `marker`: the step at which the provider stops ("reset": in a recycle, right
  after the machine was reset; "boot": in a create, once the new machine is up) while the file
  `hold` exists, after writing the machine's id to `marker`. The test SIGKILLs the worker
  there, or flushes Redis and then lets it go on.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pool.core.logs import configure_logging
from pool.core.provider import Machine, MachineState
from pool.providers.local import LocalProvider
from pool.services.refill import RefillSettings
from pool.store.inventory import PoolKey
from workers.config import WorkerConfig
from workers.supervisor import run_worker

POOL = PoolKey("react-web", "local")


class HoldingProvider(LocalProvider):
    """The real local provider, held at one step while the file `hold` exists."""

    def __init__(self, base_dir: Path, step: str, marker: Path, hold: Path) -> None:
        super().__init__(base_dir)
        self._step, self._marker, self._hold = step, marker, hold

    async def _held(self, machine_id: str) -> None:
        if not self._hold.exists():
            return
        self._marker.write_text(machine_id)
        while self._hold.exists():
            await asyncio.sleep(0.05)

    async def reset(self, machine_id: str) -> Machine:
        machine = await super().reset(machine_id)
        if self._step == "reset":
            await self._held(machine_id)
        return machine

    async def wait(self, machine_id: str, state: MachineState, timeout: float) -> Machine:
        machine = await super().wait(machine_id, state, timeout)
        if self._step == "boot" and state is MachineState.STARTED:
            await self._held(machine_id)
        return machine


def config_from(raw: dict[str, Any]) -> WorkerConfig:
    base_dir = Path(raw["base_dir"])
    step = str(raw.get("step", ""))

    def provider(_redis: Any) -> LocalProvider:
        if step:
            return HoldingProvider(base_dir, step, Path(raw["marker"]), Path(raw["hold"]))
        if "python" in raw:
            return LocalProvider(base_dir, python=raw["python"], isolate=raw.get("confined", True))
        return LocalProvider(base_dir)

    timeout = int(raw["job_timeout"])
    backoff_first, backoff_max = raw.get("backoff", (5.0, 300.0))
    return WorkerConfig(
        database_url=raw["database_url"],
        redis_url=raw["redis_url"],
        provider_factory=provider,
        default_pools=[POOL],
        default_bounds=(int(raw["pool_min"]), int(raw["pool_max"])),
        refill=RefillSettings(
            refill_seconds=5.0,
            headroom=0.0,
            boot_timeout=timeout * 0.8,
            resize_lock_seconds=timeout,
            create_backoff_seconds=float(backoff_first),
            create_backoff_max_seconds=float(backoff_max),
        ),
        pending_ttl_ms=10_000,
        ondemand_max=0,
        resize_interval_seconds=1,
        reconcile_interval_seconds=int(raw["reconcile_interval"]),
        job_timeout_seconds=timeout,
        orphan_grace_seconds=float(raw["orphan_grace"]),
    )


if __name__ == "__main__":
    configure_logging("info")
    asyncio.run(run_worker(config_from(json.loads(Path(sys.argv[1]).read_text()))))
