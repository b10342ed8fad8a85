"""The interface every machine provider implements (local processes, Fly Machines).

A provider knows how to make, start, stop and destroy machines and how to list the ones it
owns. It knows nothing of leases, sessions or Redis: the pool manager decides, the provider does.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pool.core.states import Tier


class MachineState(enum.StrEnum):
    """Provider-level lifecycle, named after Fly's machine states."""

    CREATED = "created"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    # Snapshotted (memory and all): `start` resumes it in a few hundred ms (Fly only).
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    DESTROYED = "destroyed"
    FAILED = "failed"


def new_machine_token() -> str:
    """A machine's own secret, which its agent presents on the sandbox socket. Providers make
    a new one on create and on every reset, and report it as Machine.metadata["token"]; the
    pool keeps only its hash (pool.store.inventory.set_token)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class MachineSpec:
    """What to create: a template in a region, with its guest size."""

    template: str
    region: str
    cpus: int = 1
    memory_mb: int = 1024


@dataclass(frozen=True)
class Guest:
    """A machine's size, as operators set it per (template, region)."""

    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class Machine:
    id: str
    template: str
    region: str
    state: MachineState
    # Where the orchestrator reaches the machine (http://host:port locally, the 6PN address on Fly).
    address: str
    created_at: float
    healthy: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def tombstone(cls, machine_id: str) -> Machine:
        """What wait(DESTROYED) returns once the provider no longer knows the machine at all."""
        return cls(
            id=machine_id,
            template="",
            region="",
            state=MachineState.DESTROYED,
            address="",
            created_at=0.0,
        )


class MachineProvider(Protocol):
    """Create, start, stop, destroy, get, list and wait for machines.

    Every method is safe to call twice: destroying a destroyed machine or starting a started one
    is not an error, since the arq jobs that call these are delivered at least once.
    """

    name: str

    async def create(self, spec: MachineSpec) -> Machine: ...

    async def start(self, machine_id: str) -> Machine: ...

    async def stop(self, machine_id: str) -> Machine: ...

    async def destroy(self, machine_id: str) -> None: ...

    async def get(self, machine_id: str) -> Machine: ...

    async def list(self) -> list[Machine]: ...

    async def wait(self, machine_id: str, state: MachineState, timeout: float) -> Machine:
        """Wait until the machine reaches `state` (and, for STARTED, reports healthy)."""
        ...

    async def reset(self, machine_id: str) -> Machine:
        """Return a used machine to a clean state: no files, processes or tokens of its last
        session survive. Locally: stop, wipe the workspace, start. On Fly: stop + start boots
        from the image again."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SuspendingProvider(MachineProvider, Protocol):
    """A provider that can also suspend a started machine (`start` resumes it) and change a
    machine's guest size in place. Its `supports_suspend` says whether the pool may use the
    suspended and stopped tiers."""

    supports_suspend: bool

    async def suspend(self, machine_id: str) -> Machine: ...

    async def resize(self, machine_id: str, cpus: int, memory_mb: int) -> Machine: ...


def pool_tiers(provider: MachineProvider) -> frozenset[Tier]:
    """The tiers a pool on this provider may hold. Every provider keeps hot machines; only one
    that suspends (Fly) keeps suspended and stopped ones too. A provider without the capability
    (local processes: a stopped process is no cheaper to keep than a running one, and there is
    no snapshot to resume) degrades to the hot tier alone."""
    if isinstance(provider, SuspendingProvider) and provider.supports_suspend:
        return frozenset(Tier)
    return frozenset({Tier.HOT})


def guest_of(machine: Machine) -> Guest | None:
    """The machine's size when the provider reports it in the metadata (Fly does)."""
    try:
        return Guest(int(machine.metadata["guest_cpus"]), int(machine.metadata["guest_memory_mb"]))
    except (KeyError, ValueError):
        return None
