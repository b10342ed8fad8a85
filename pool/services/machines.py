"""Destroying one machine: the provider's machine and the pool's record go together, whatever
the provider answers (a record left behind would be leased; a machine left behind is an orphan
that reconcile destroys after its grace)."""

from __future__ import annotations

from pool.core.provider import MachineProvider
from pool.store.inventory import Inventory


async def destroy_machine(inventory: Inventory, provider: MachineProvider, machine_id: str) -> None:
    try:
        await provider.destroy(machine_id)
    finally:
        await inventory.forget(machine_id)
