"""Fly Machines as the pool's machines (docs/fly.md tells the whole story, with sources).

One provider instance talks to one Fly app. Every mutation (start, stop, suspend, update,
destroy) holds the machine's Fly lease for its duration and sends the nonce, so two workers
never change one machine at once; reads (get, list, wait, exec) take no lease. Rate limiting,
retries and error translation live in fly_client, shared by every call of this instance.

Create is not idempotent at Fly; fly_create makes it so (create_id in metadata, list before
retrying) and falls back through the configured regions on capacity errors.

Fly's "suspended" and "suspending" read as MachineState.SUSPENDED and SUSPENDING (fly_models),
so the pool can keep a suspended tier (`supports_suspend`); the raw Fly state is in
Machine.metadata["fly_state"].

Concurrency: nothing here is shared between calls except the rate limiter's buckets (see
fly_ratelimit) and the httpx client; any number of calls may run at once on one event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from pool.core.errors import MachineNotFound, ProviderError
from pool.core.provider import Machine, MachineSpec, MachineState, new_machine_token
from pool.providers.fly_client import FlyAPIError, FlyClient, ProviderMeter, RetryPolicy
from pool.providers.fly_create import MachineCreator
from pool.providers.fly_machines import MAX_WAIT_CALL, PAGE_SIZE, MachinesAPI
from pool.providers.fly_models import (
    WAITABLE,
    ExecResult,
    FlyMachineDefaults,
    MachineBody,
    resized_config,
    to_machine,
    with_token,
)
from pool.providers.fly_ratelimit import FLY_RATES, Limiter, Rate, RateLimiter

__all__ = ["FlyMachineDefaults", "FlyProvider", "FlyRuntime", "FlyTuning", "RetryPolicy"]

DEFAULT_BASE_URL = "https://api.machines.dev/v1"
POLL_INTERVAL = 1.0
DEFAULT_MACHINE = FlyMachineDefaults()
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class FlyTuning:
    """How the provider uses the API. The defaults are Fly's documented values (docs/fly.md);
    tests shorten them."""

    base_url: str = DEFAULT_BASE_URL
    lease_ttl: int = 60  # seconds a mutation holds the machine's Fly lease
    stop_timeout: float = 30.0
    retry: RetryPolicy = DEFAULT_RETRY
    rates: Mapping[str, Rate] = field(default_factory=lambda: FLY_RATES)
    request_timeout: float = MAX_WAIT_CALL + 15.0  # a /wait call may legitimately take 60 s
    page_size: int = PAGE_SIZE


@dataclass(frozen=True)
class FlyRuntime:
    """What the provider runs on: its HTTP transport and its clock. Production takes the
    defaults; tests pass the fake API's transport and a virtual clock (pinned jitter)."""

    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    # Hears API errors and rate-limit waits (the process's metrics).
    meter: ProviderMeter | None = None


class FlyProvider:
    """The MachineProvider over one Fly app; see the module docstring."""

    name = "fly"
    # The pool may keep suspended and stopped tiers of these machines
    # (pool.core.provider.pool_tiers).
    supports_suspend = True

    def __init__(
        self,
        app_name: str,
        token: str,
        image: str,
        *,
        regions: Sequence[str] = (),
        pool: str = "preview",
        defaults: FlyMachineDefaults = DEFAULT_MACHINE,
        limiter: Limiter | None = None,
        tuning: FlyTuning = FlyTuning(),  # frozen: one shared default is safe
        runtime: FlyRuntime = FlyRuntime(),
    ) -> None:
        retry, clock, sleep = tuning.retry, runtime.clock, runtime.sleep
        self._pool = pool
        self._defaults = defaults
        self._lease_ttl = tuning.lease_ttl
        self._stop_timeout = tuning.stop_timeout
        self._attempts = retry.attempts
        self._clock = clock
        self._sleep = sleep
        self._client = FlyClient(
            app_name=app_name,
            token=token,
            base_url=tuning.base_url,
            transport=runtime.transport,
            # Without a shared limiter, this process keeps Fly's limits on its own.
            limiter=limiter or RateLimiter(clock, sleep, tuning.rates),
            retry=retry,
            sleep=sleep,
            rand=runtime.rand,
            timeout=tuning.request_timeout,
            meter=runtime.meter,
        )
        self._api = MachinesAPI(self._client, tuning.page_size)
        self._creator = MachineCreator(
            self._api,
            pool=pool,
            image=image,
            defaults=defaults,
            regions=regions,
            attempts=retry.attempts,
            sleep=sleep,
            backoff=self._client.backoff,
            destroy=self.destroy,
        )

    @property
    def defaults(self) -> FlyMachineDefaults:
        """What every machine of this pool is created with."""
        return self._defaults

    async def create(self, spec: MachineSpec) -> Machine:
        """Create in spec.region, falling back through `regions` on capacity errors (the
        machine may land elsewhere: Machine.region says where). See fly_create."""
        return self._machine(await self._creator.create(spec))

    # -- mutations, each under the machine's lease ---------------------------------------------

    async def start(self, machine_id: str) -> Machine:
        """Start a stopped or created machine, or resume a suspended one."""
        return await self._transition(machine_id, "start", {"started", "starting"})

    async def stop(self, machine_id: str) -> Machine:
        return await self._transition(machine_id, "stop", {"stopped", "stopping", "created"})

    async def suspend(self, machine_id: str) -> Machine:
        """Snapshot a started machine; `start` resumes it (or cold-boots if it cannot)."""
        return await self._transition(machine_id, "suspend", {"suspended", "suspending"})

    async def reset(self, machine_id: str) -> Machine:
        """Stop, give the agent a new token, start: the machine boots from its image again,
        with a clean root filesystem, and the last session's machine token no longer opens the
        sandbox socket. A suspended machine is stopped too, which discards its snapshot (notes
        section 2). The token changes by an update, which replaces the whole config: it is
        sent back whole; the stopped machine stays stopped until our own start (`_update`)."""
        async with self._client.lease(machine_id, "reset", self._lease_ttl) as nonce:
            if (await self._api.get(machine_id)).state not in ("stopped", "created"):
                await self._act(machine_id, "stop", nonce, {"stopped", "stopping"})
                deadline = self._clock() + self._stop_timeout
                # STOPPED is Fly's exact "stopped": a suspended machine reads SUSPENDED.
                await self._wait(machine_id, MachineState.STOPPED, deadline)
            token = new_machine_token()
            await self._update(machine_id, nonce, lambda config: with_token(config, token))
            await self._act(machine_id, "start", nonce, {"started", "starting"})
        machine = await self.get(machine_id)
        if machine.metadata.get("token") != token:
            # Fly can roll an update back (research notes section 8); a machine that kept the
            # last session's token must not be pooled again. The recycle destroys it.
            raise ProviderError(f"machine {machine_id} did not take its new token")
        return machine

    async def resize(self, machine_id: str, cpus: int, memory_mb: int) -> Machine:
        """Change the guest size; a running machine reboots on its new version (notes
        section 2)."""
        async with self._client.lease(machine_id, "resize", self._lease_ttl) as nonce:
            body = await self._update(
                machine_id, nonce, lambda config: resized_config(config, cpus, memory_mb)
            )
        return self._machine(body)

    async def destroy(self, machine_id: str) -> None:
        """Force-destroy; a machine that is already gone is not an error."""
        try:
            async with self._client.lease(machine_id, "destroy", self._lease_ttl) as nonce:
                await self._api.destroy(machine_id, nonce)
        except MachineNotFound:
            return

    async def _update(
        self, machine_id: str, nonce: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> MachineBody:
        """Update the config to `change(config)`. An update replaces the whole config, so it
        sends back all of it, guarded by `current_version`. A machine that is not running
        stays down (`skip_launch`): the pool starts machines itself, and a stopped-tier
        machine that an update booted would run, and cost, unnoticed."""
        attempt = 0
        while True:
            body = await self._api.get(machine_id)
            request: dict[str, Any] = {
                "config": change(body.config),
                "current_version": body.current_version,
            }
            if body.state not in ("started", "starting"):
                request["skip_launch"] = True
            try:
                return await self._api.update(machine_id, request, nonce)
            except FlyAPIError as exc:
                # 409: the machine changed between our read and our write; read again.
                if exc.status != 409 or attempt + 1 >= self._attempts:
                    raise
                attempt += 1

    async def _transition(self, machine_id: str, verb: str, settled: set[str]) -> Machine:
        async with self._client.lease(machine_id, verb, self._lease_ttl) as nonce:
            await self._act(machine_id, verb, nonce, settled)
        return await self.get(machine_id)

    async def _act(self, machine_id: str, verb: str, nonce: str, settled: set[str]) -> None:
        try:
            await self._api.act(machine_id, verb, nonce)
        except FlyAPIError as exc:
            # 412: not a state this verb applies to. Already being there is success: the
            # pool's jobs are delivered at least once.
            if exc.status != 412 or (await self._api.get(machine_id)).state not in settled:
                raise

    # -- reads --------------------------------------------------------------------------------

    async def get(self, machine_id: str) -> Machine:
        return self._machine(await self._api.get(machine_id))

    async def list(self) -> builtins.list[Machine]:
        """Every machine of this pool (tagged metadata.pool), across all pages."""
        return [self._machine(body) for body in await self._api.list({"metadata.pool": self._pool})]

    async def wait(self, machine_id: str, state: MachineState, timeout: float) -> Machine:
        """Wait until the machine is in `state`; for STARTED, also until it is healthy."""
        return await self._wait(machine_id, state, self._clock() + timeout)

    async def exec(
        self, machine_id: str, command: Sequence[str], timeout: int | None = None
    ) -> ExecResult:
        """Run a command in the machine. Fly answers 200 whatever the command's exit code, so
        the result must be read: ExecResult.ok."""
        return await self._api.exec(machine_id, command, timeout or self._defaults.exec_timeout)

    async def check_health(self, machine_id: str) -> bool:
        """Run the configured health command; without one, Fly's own view of the machine."""
        command = self._defaults.health_command
        if command is None:
            return (await self.get(machine_id)).healthy
        try:
            return (await self.exec(machine_id, command)).ok
        except FlyAPIError as exc:
            if exc.status in (408, 412):  # timed out, or not running: not healthy either way
                return False
            raise

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- helpers ------------------------------------------------------------------------------

    async def _wait(self, machine_id: str, state: MachineState, deadline: float) -> Machine:
        """Read the machine; if it is not there yet, block in Fly's wait endpoint (at most 60 s
        a call; 408 means "not yet") and read again, until the deadline."""
        while True:
            try:
                body = await self._api.get(machine_id)
            except MachineNotFound:
                if state is MachineState.DESTROYED:
                    return Machine.tombstone(machine_id)
                raise
            machine = self._machine(body)
            reached = machine.state is state
            if reached and (state is not MachineState.STARTED or await self._healthy(machine)):
                return machine
            if _hopeless(machine.state, state):
                raise ProviderError(f"machine {machine_id} is {body.state}; it will not be {state}")
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ProviderError(f"machine {machine_id} is {body.state}, not {state}, in time")
            target = WAITABLE.get(state)
            if reached or target is None:  # started but not healthy yet, or not waitable
                await self._sleep(min(POLL_INTERVAL, remaining))
            else:
                # Also wake on the states it cannot come back from, to fail fast.
                ends = [end for end in ("failed", "destroyed") if end != target]
                await self._api.wait(machine_id, [target, *ends], remaining)

    async def _healthy(self, machine: Machine) -> bool:
        if self._defaults.health_command is None:
            return machine.healthy
        return machine.healthy and await self.check_health(machine.id)

    def _machine(self, body: MachineBody) -> Machine:
        return to_machine(
            body, app_name=self._client.app_name, agent_port=self._defaults.agent_port
        )


def _hopeless(current: MachineState, wanted: MachineState) -> bool:
    """Whether waiting longer cannot help: destroyed is final, and a failed machine only
    moves on when someone acts on it (or destroys it)."""
    if current is MachineState.DESTROYED:
        return wanted is not MachineState.DESTROYED
    return current is MachineState.FAILED and wanted not in (current, MachineState.DESTROYED)
