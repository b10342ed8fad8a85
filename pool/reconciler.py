"""Reconcile: Redis, the Postgres ledger and the provider's own machine list, made to agree.

    provider machine, no Redis record, older than the grace period  -> destroy (orphan)
    Redis record, provider has no live machine                      -> forget; end its session
    Redis booting record older than the boot timeout                -> destroy and forget
    Redis moving record (between tiers, resizing) past the boot timeout -> destroy and forget
    Postgres active lease, no Redis record of that machine          -> end the session (failed)
    Redis user-session entry with no live session in Postgres       -> drop it

Run as a cron job every interval; every step is idempotent.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from pool.inventory import Inventory, MachineRecord
from pool.leasing import LeaseBroker
from pool.lifecycle import EnqueueRecycle, end_and_release
from pool.metrics import Metrics
from pool.provider import Machine, MachineProvider, MachineState
from pool.refill import destroy_machine
from pool.states import PoolState
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)

_DEAD = (MachineState.DESTROYED, MachineState.FAILED)


@dataclass(frozen=True)
class ReconcileReport:
    orphans_destroyed: int = 0
    records_dropped: int = 0
    sessions_failed: int = 0
    user_entries_dropped: int = 0


async def reconcile(
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    inventory: Inventory,
    provider: MachineProvider,
    enqueue_recycle: EnqueueRecycle,
    metrics: Metrics,
    *,
    orphan_grace_seconds: float = 60.0,
    boot_timeout: float = 120.0,
    now: float | None = None,
) -> ReconcileReport:
    now = time.time() if now is None else now
    provided = {m.id: m for m in await provider.list()}
    records: dict[str, MachineRecord] = {}
    for pool in await inventory.pools():
        for record in await inventory.machines(pool):
            records[record.id] = record

    orphans = 0
    for machine in provided.values():
        if (
            machine.id not in records
            and machine.state is not MachineState.DESTROYED  # already on its way out
            and now - machine.created_at > orphan_grace_seconds
        ):
            log.warning("destroying orphan machine %s", machine.id)
            await destroy_machine(inventory, provider, machine.id)
            orphans += 1

    dropped = failed = 0
    for record in records.values():
        if _is_dead(record, provided.get(record.id), now, boot_timeout):
            await destroy_machine(inventory, provider, record.id)
            dropped += 1
            if record.session_id:
                failed += await _fail_session(db, broker, record.session_id, enqueue_recycle)

    failed += await _fail_unbacked_leases(db, broker, records, enqueue_recycle)
    async with db.connection() as conn:
        await sessions.repair_live_counts(conn)
    entries = await _drop_stale_user_entries(db, broker, records)

    report = ReconcileReport(orphans, dropped, failed, entries)
    metrics.incr("reconcile.orphans_destroyed", orphans)
    metrics.incr("reconcile.records_dropped", dropped)
    if orphans or dropped or failed:
        log.warning("reconcile found drift: %s", report)
    return report


def _is_dead(
    record: MachineRecord, machine: Machine | None, now: float, boot_timeout: float
) -> bool:
    if record.state == PoolState.BOOTING:
        # The creating job owns a booting machine until the boot timeout.
        return record.booting_at is not None and now - record.booting_at > boot_timeout
    if record.state == PoolState.MOVING and (
        record.taken_at is not None and now - record.taken_at > boot_timeout
    ):
        return True  # the worker moving it died: the machine is unused, so it goes
    return machine is None or machine.state in _DEAD


async def _fail_unbacked_leases(
    db: AsyncConnectionPool,
    broker: LeaseBroker,
    records: dict[str, MachineRecord],
    enqueue: EnqueueRecycle,
) -> int:
    """Ledger rows whose machine Redis no longer holds as leased (Redis lost it, or reconcile
    just dropped it): the session cannot be served, so it fails."""
    async with db.connection() as conn:
        leases = await sessions.active_leases(conn)
    failed = 0
    for machine_id, _epoch, session_id in leases:
        record = records.get(machine_id)
        if record is None or record.state not in (PoolState.LEASED, PoolState.PENDING):
            failed += await _fail_session(db, broker, str(session_id), enqueue)
    return failed


async def _drop_stale_user_entries(
    db: AsyncConnectionPool, broker: LeaseBroker, records: dict[str, MachineRecord]
) -> int:
    """The Redis concurrent-session gate holds session ids; drop those Postgres no longer has
    live (a pending lease mid-commit is not stale)."""
    pending = {r.session_id for r in records.values() if r.state == PoolState.PENDING}
    dropped = 0
    for user_id in await broker.users_with_sessions():
        async with db.connection() as conn:
            live = {str(s) for s in await sessions.live_session_ids(conn, user_id)}
        stale = await broker.live_sessions_of(user_id) - live - pending
        await broker.drop_user_sessions(user_id, stale)
        dropped += len(stale)
    return dropped


async def _fail_session(
    db: AsyncConnectionPool, broker: LeaseBroker, session_id: str, enqueue: EnqueueRecycle
) -> int:
    ended = await end_and_release(
        db,
        broker,
        uuid.UUID(session_id),
        enqueue,
        reason="machine_lost",
        status=SessionStatus.FAILED,
    )
    return int(ended)
