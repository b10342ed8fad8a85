"""Bringing a machine into a tier: the provider calls behind every move between tiers.

    hot        started, and healthy (its dev server answers)
    suspended  started and healthy first, then suspended: the snapshot holds a running dev
               server, so a resume serves at once
    stopped    stopped (a later start boots from the image: a clean root filesystem)

Each step looks at the machine first and skips what is already done, so a job delivered twice,
or a machine caught mid-transition (an update that is rebooting it), is not an error.
"""

from __future__ import annotations

from pool.core.errors import ProviderError
from pool.core.provider import Machine, MachineProvider, MachineState, SuspendingProvider
from pool.core.states import Tier

_UP = (MachineState.STARTED, MachineState.STARTING)


async def bring_to(
    provider: MachineProvider, machine_id: str, tier: Tier, timeout: float
) -> Machine:
    """Make the machine what `tier` holds and return it; raises ProviderError when it cannot
    (a provider without suspend has no suspended tier)."""
    if tier is Tier.HOT:
        return await _started(provider, machine_id, timeout)
    if tier is Tier.SUSPENDED:
        if not isinstance(provider, SuspendingProvider) or not provider.supports_suspend:
            raise ProviderError(f"provider {provider.name} cannot suspend machines")
        current = await provider.get(machine_id)
        if current.state is MachineState.SUSPENDED:
            return current
        if current.state is not MachineState.SUSPENDING:
            await _started(provider, machine_id, timeout, current)
            await provider.suspend(machine_id)
        return await provider.wait(machine_id, MachineState.SUSPENDED, timeout)
    current = await provider.get(machine_id)
    if current.state is MachineState.STOPPED:
        return current
    if current.state is not MachineState.STOPPING:
        await provider.stop(machine_id)
    return await provider.wait(machine_id, MachineState.STOPPED, timeout)


async def _started(
    provider: MachineProvider, machine_id: str, timeout: float, current: Machine | None = None
) -> Machine:
    current = current or await provider.get(machine_id)
    if current.state not in _UP:
        # Resumes a suspended machine from its snapshot; boots a stopped one from its image.
        await provider.start(machine_id)
    return await provider.wait(machine_id, MachineState.STARTED, timeout)
