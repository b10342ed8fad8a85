"""Reconcile: Redis, the Postgres ledger and the provider's own machine list, made to agree, and
machines stuck on their way somewhere released.

    provider machine, no Redis record, unreleased ledger lease  -> rebuild the leased record
                            (token hash from the provider, session, user and epoch from the ledger)
    provider machine, no Redis record, older than the grace period -> destroy (orphan)
    Redis record without a token hash       -> take the hash from the provider, or destroy it
    Redis record, provider has no live machine                   -> forget; end its session
    ready hot record whose machine is stopped or suspended       -> destroy and forget
    booting, recycling, moving or draining record whose owner has been silent for longer than
      `stuck_seconds` (a job's timeout: the worker that owned it died) -> destroy and forget
    ready hot or leased record whose agent has been gone for `agent_lost_seconds`
                                            -> destroy and forget; a leased one's session fails
    Postgres active lease, no Redis record of that machine          -> end the session (failed)
    Redis leased record whose session Postgres has ended            -> announce the end, release
                            (the end's own announce or release did not reach Redis)
    Redis user-session entry with no live session in Postgres       -> drop it

Why destroy rather than rebuild a machine that is not leased: nothing says whether it was used
since its last reset (a used machine is never handed out unreset), and the refill replaces it.
A leased machine's record is rebuilt, so that its agent is let in again and its session goes on.

Run as a cron job every interval; every step is idempotent.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from pool.core.provider import Machine, MachineState
from pool.core.states import PoolState, Tier
from pool.edits.edit_log import announce_end, end_unannounced
from pool.services.context import PoolServices
from pool.services.lifecycle import end_and_release, release_session_machine
from pool.services.machines import destroy_machine
from pool.store.inventory import Inventory, MachineRecord, PoolKey
from pool.store.leasing import LeaseBroker
from sql import sessions
from sql.sessions import EndedSession
from sql.states import SessionStatus

log = logging.getLogger(__name__)

_DEAD = (MachineState.DESTROYED, MachineState.FAILED)
# A hot machine serves at once; stopped or suspended (its agent exited, Fly gave up restarting
# it), it cannot.
_NOT_RUNNING = (MachineState.STOPPED, MachineState.SUSPENDED)
# Each of these states belongs to one job (create, recycle, move, drain), stamped when it began.
_TRANSIENT = (PoolState.BOOTING, PoolState.RECYCLING, PoolState.MOVING, PoolState.DRAINING)


@dataclass(frozen=True)
class ReconcileReport:
    orphans_destroyed: int = 0
    records_dropped: int = 0
    sessions_failed: int = 0
    user_entries_dropped: int = 0
    records_restored: int = 0
    tokens_restored: int = 0
    ended_leases_released: int = 0


async def reconcile(
    services: PoolServices,
    *,
    orphan_grace_seconds: float = 60.0,
    stuck_seconds: float = 180.0,
    agent_lost_seconds: float = 60.0,
    now: float | None = None,
) -> ReconcileReport:
    # One at a time over all workers: a run that read the records before another rebuilt one
    # would destroy that machine as an orphan. The scheduled run and the one a store reset
    # starts at once do meet: the later waits for the earlier, then reads afresh.
    exclusive = services.inventory.exclusive("reconcile", ttl=stuck_seconds, wait=stuck_seconds)
    async with exclusive as mine:
        if not mine:
            log.warning("another reconcile has run for %.0fs; this one is skipped", stuck_seconds)
            return ReconcileReport()
        return await _reconcile(
            services,
            orphan_grace_seconds=orphan_grace_seconds,
            stuck_seconds=stuck_seconds,
            agent_lost_seconds=agent_lost_seconds,
            now=time.time() if now is None else now,
        )


async def _reconcile(
    services: PoolServices,
    *,
    orphan_grace_seconds: float,
    stuck_seconds: float,
    agent_lost_seconds: float,
    now: float,
) -> ReconcileReport:
    db, inventory, provider = services.db, services.inventory, services.provider
    provided = {m.id: m for m in await provider.list()}
    records: dict[str, MachineRecord] = {}
    for pool in await inventory.pools():
        for record in await inventory.machines(pool):
            records[record.id] = record

    restored = await _restore_leased(db, inventory, provided, records)
    orphans = 0
    for found in provided.values():
        if (
            found.id not in records
            and found.state is not MachineState.DESTROYED  # already on its way out
            and now - found.created_at > orphan_grace_seconds
            and await inventory.machine(found.id) is None  # not recorded since the read above
        ):
            log.warning("destroying orphan machine %s", found.id)
            await destroy_machine(inventory, provider, found.id)
            orphans += 1

    agents_lost = await _agents_lost(inventory, list(records.values()), now, agent_lost_seconds)
    tokens = dropped = failed = 0
    for record in records.values():
        machine = provided.get(record.id)
        if record.token_hash is None and await _restore_token(inventory, record, machine):
            tokens += 1
            continue
        reason = _why_dead(record, machine, now, stuck_seconds)
        if reason is None and record.id in agents_lost:
            reason = f"its agent has been gone for over {agent_lost_seconds:.0f}s"
        if reason is None or not await _unchanged(inventory, record):
            continue
        log.warning("replacing machine %s (%s): %s", record.id, record.state.value, reason)
        await destroy_machine(inventory, provider, record.id)
        dropped += 1
        if record.session_id:
            failed += await _fail_session(services, record.session_id)

    failed += await _fail_unbacked_leases(services, records)
    released = await _release_ended_leases(services, records)
    released += await _announce_missed_ends(services)
    async with db.connection() as conn:
        await sessions.repair_live_counts(conn)
    entries = await _drop_stale_user_entries(db, services.broker, records)

    report = ReconcileReport(orphans, dropped, failed, entries, restored, tokens, released)
    services.metrics.reconciled(dataclasses.asdict(report))
    if orphans or dropped or failed or restored or tokens or released:
        log.warning("reconcile found drift: %s", report)
    return report


def _why_dead(
    record: MachineRecord, machine: Machine | None, now: float, stuck_seconds: float
) -> str | None:
    """Why the record's machine must go, or None when it is fine."""
    if record.state in _TRANSIENT:
        # booting_at for a boot, taken_at for the rest (a recycle job stamps it again when it
        # starts). A record without its stamp is as old as can be.
        since = record.booting_at if record.state is PoolState.BOOTING else record.taken_at
        if since is None or now - since > stuck_seconds:
            return f"{record.state.value} for over {stuck_seconds:.0f}s: its worker died"
        # The job that owns it (a boot, a recycle, a move) decides what becomes of it.
        return None if record.state is PoolState.BOOTING else _gone(machine)
    if record.token_hash is None:
        return "no token hash, and the provider reports no token"
    if record.state is PoolState.READY and record.tier is Tier.HOT and machine is not None:
        if machine.state in _NOT_RUNNING:
            return f"ready to serve, but the provider says {machine.state.value}"
    return _gone(machine)


def _gone(machine: Machine | None) -> str | None:
    if machine is None or machine.state in _DEAD:
        return "the provider has no live machine"
    return None


async def _restore_token(
    inventory: Inventory, record: MachineRecord, machine: Machine | None
) -> bool:
    """A record without its token hash (written before every record carried one): its agent is
    refused until the hash is back."""
    token = machine.metadata.get("token") if machine is not None else None
    if not token or not await inventory.set_token(record.id, token):
        return False
    log.warning("restored the token hash of machine %s from the provider", record.id)
    return True


async def _restore_leased(
    db: AsyncConnectionPool,
    inventory: Inventory,
    provided: dict[str, Machine],
    records: dict[str, MachineRecord],
) -> int:
    """Rebuild the records Redis lost of machines the ledger holds as leased to a live session.
    Adds them to `records`."""
    async with db.connection() as conn:
        leases = await sessions.active_leases(conn)
    restored = 0
    for machine_id, epoch, session_id in leases:
        machine = provided.get(machine_id)
        token = machine.metadata.get("token") if machine is not None else None
        if machine_id in records or machine is None or machine.state in _DEAD or not token:
            continue  # nothing lost, or nothing to rebuild from: the session fails below
        async with db.connection() as conn:
            session = await sessions.get_session(conn, session_id)
        if session is None or not session.status.is_live or session.machine_id != machine_id:
            continue
        rebuilt = await inventory.restore_leased(
            machine_id,
            PoolKey(session.template, session.region),
            machine.address,
            session_id=str(session_id),
            user_id=str(session.user_id),
            epoch=epoch,
            token=token,
        )
        if rebuilt:
            log.warning(
                "rebuilt the lost record of machine %s (session %s)", machine_id, session_id
            )
        # Its `agent` mark is not restored: _agents_lost sets it once the agent is seen
        # connected (its socket usually outlived the Redis restart); an agent that never comes
        # back with a machine that is gone is caught by the provider's report instead.
        # Rebuilt, or recorded since this run read the records: either way it is no orphan.
        record = await inventory.machine(machine_id)
        if record is not None:
            records[machine_id] = record
            restored += rebuilt
    return restored


async def _agents_lost(
    inventory: Inventory, records: list[MachineRecord], now: float, bound: float
) -> set[str]:
    """Ready hot machines, and leased ones, whose agent (connected when they became ready) has
    been gone for longer than `bound`: a leased one's session then fails (`machine_lost`) and
    its editors are told, rather than waiting on a preview that no longer answers. Notes when
    an agent is first seen gone, connected late, or back."""
    ready = [
        r
        for r in records
        if (r.state is PoolState.READY and r.tier is Tier.HOT) or r.state is PoolState.LEASED
    ]
    connected = await inventory.agents_connected([r.id for r in ready])
    lost: set[str] = set()
    if connected is None:
        return lost  # this Redis does not say who listens: lease.lua does not check either
    for record in ready:
        if record.id in connected:
            if record.agent_at is None:  # connected after the machine became ready
                await inventory.stamp(record.id, record.state, "agent", epoch=record.epoch)
            if record.agent_lost_at is not None:
                await inventory.stamp(
                    record.id, record.state, "agent_lost_at", epoch=record.epoch, clear=True
                )
            continue
        if record.agent_at is None:
            continue  # no agent ever seen (a placeholder, or one that never connected)
        since = record.agent_lost_at or await inventory.stamp(
            record.id, record.state, "agent_lost_at", epoch=record.epoch
        )
        if since is not None and now - since > bound:
            lost.add(record.id)
    return lost


async def _fail_unbacked_leases(services: PoolServices, records: dict[str, MachineRecord]) -> int:
    """Ledger rows whose machine Redis no longer holds as leased (Redis lost it and it could not
    be rebuilt, or reconcile just dropped it): the session cannot be served, so it fails."""
    async with services.db.connection() as conn:
        leases = await sessions.active_leases(conn)
    failed = 0
    for machine_id, _epoch, session_id in leases:
        record = records.get(machine_id)
        if record is None or record.state not in (PoolState.LEASED, PoolState.PENDING):
            # `records` was read when this run began: a lease made since then (its machine was
            # ready then) is backed now. Only what Redis says at this moment counts.
            record = await services.inventory.machine(machine_id)
        if record is None or record.state not in (PoolState.LEASED, PoolState.PENDING):
            failed += await _fail_session(services, str(session_id))
    return failed


async def _unchanged(inventory: Inventory, seen: MachineRecord) -> bool:
    """The machine's record is still what this run read (same state and epoch): nothing has
    leased, released or moved it since, so a decision taken on the old read still holds."""
    now = await inventory.machine(seen.id)
    return now is not None and (now.state, now.epoch) == (seen.state, seen.epoch)


async def _release_ended_leases(services: PoolServices, records: dict[str, MachineRecord]) -> int:
    """Leased records of sessions that Postgres has ended: the end committed, but Redis did not
    hear of it (down at that moment, or lost the `ended` mark). Announce the end (editors are
    told, patches refused) and release the machine, as the end itself would have."""
    released = 0
    for record in records.values():
        if record.state is not PoolState.LEASED or record.session_id is None:
            continue
        async with services.db.connection() as conn:
            row = await sessions.get_session(conn, uuid.UUID(record.session_id))
        if row is None or row.status.is_live:
            continue
        log.warning(
            "session %s ended (%s) but its machine %s was still leased: releasing it",
            row.id,
            row.end_reason,
            record.id,
        )
        ended = EndedSession(
            id=row.id,
            project_id=row.project_id,
            user_id=row.user_id,
            machine_id=record.id,
            epoch=record.epoch,
            template=row.template,
            region=row.region,
            reason=row.end_reason or row.status,
            status=row.status,
        )
        await release_session_machine(
            services.broker, ended, services.enqueue_recycle, keeper=services.keeper
        )
        released += 1
    return released


# Ends older than this had their editors told by an earlier run (or have none left to tell).
MISSED_END_WINDOW_SECONDS = 600


async def _announce_missed_ends(services: PoolServices) -> int:
    """Sessions Postgres ended recently whose edit log in Redis does not know it (the end's
    announce failed, and no leased record was left to release): announce it now, so their
    editors hear `ended` and no patch of theirs is acked any more, and keep their files."""
    broker = services.broker
    async with services.db.connection() as conn:
        ended = await sessions.recently_ended(conn, MISSED_END_WINDOW_SECONDS)
    told = 0
    for session in ended:
        if await end_unannounced(broker.redis, str(session.id), prefix=broker.prefix):
            log.warning(
                "session %s ended (%s) unannounced: announcing it", session.id, session.reason
            )
            files = await announce_end(
                broker.redis,
                str(session.id),
                session.reason,
                session.status.value,
                prefix=broker.prefix,
            )
            await services.keeper.keep_ended(session, files)
            told += 1
    return told


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


async def _fail_session(services: PoolServices, session_id: str) -> int:
    ended = await end_and_release(
        services, uuid.UUID(session_id), reason="machine_lost", status=SessionStatus.FAILED
    )
    return int(ended)
