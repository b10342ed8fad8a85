"""What the pool services share: the stores, the provider, the recycle queue and the metrics.

Built once by the process that runs the services (the worker's WorkerContext) and passed to
each service with only that call's own arguments beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from pool.core.provider import MachineProvider
from pool.services.metrics import Metrics
from pool.services.project_files import FileKeeper, PostgresProjectFiles
from pool.store.inventory import Inventory
from pool.store.leasing import LeaseBroker

# Queue the recycle of (machine, epoch): the epoch the machine holds once released.
EnqueueRecycle = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True)
class PoolServices:
    db: AsyncConnectionPool
    broker: LeaseBroker
    inventory: Inventory
    provider: MachineProvider
    enqueue_recycle: EnqueueRecycle
    metrics: Metrics

    @property
    def keeper(self) -> FileKeeper:
        """Where an ended session's files are kept for its project (the one place that picks
        the store)."""
        return FileKeeper(PostgresProjectFiles(self.db), self.metrics)
