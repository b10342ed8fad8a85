"""Queries on preview sessions and the machine ledger.

Every function takes a connection from the caller (who owns the pool and the transaction scope)
and translates psycopg errors into `sql.errors`. The lease is written in one statement (its own
transaction): the session, its ledger row, its first timeline stages and one of the user's
live-session slots. The slot is the user's counter row in `user_live_sessions` (migration 0003),
an upsert that only increments below the plan's limit: the row lock serialises concurrent leases
and the limit is re-checked on the latest row, so the count is exact under concurrency.

Statuses are `SessionStatus` in Python and their values in SQL, always derived from the enum
and its transition table (`sql.states`), never spelled out. A function that moves a session
checks the move against the table (IllegalTransition, before any write) and its statement only
touches rows in a state the table lets make that move: a session that a racing writer already
ended is left as it is.

The seed's `container_id` column holds the machine id; it is read as `machine_id`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from sql.errors import DatabaseUnavailable, DataError, LedgerConflict
from sql.stages import ONCE, LeaseKind, Stage
from sql.states import SessionStatus

Connection = AsyncConnection[Any]


class ConcurrentLimitReached(RuntimeError):
    """The user already has as many live sessions as the plan allows."""


@dataclass
class SessionRow:
    id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    machine_id: str | None
    status: SessionStatus
    created_at: datetime
    last_activity: datetime
    config: dict[str, Any]
    template: str
    region: str
    device_type: str
    lease_epoch: int | None
    expires_at: datetime
    idle_timeout_seconds: int
    ended_at: datetime | None
    end_reason: str | None
    device: str | None

    def __post_init__(self) -> None:
        # Rows come from Postgres with the status as text.
        self.status = SessionStatus(self.status)


@dataclass(frozen=True)
class NewSession:
    id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    template: str
    region: str
    device_type: str
    config: dict[str, Any]
    max_session_seconds: int
    idle_timeout_seconds: int
    device: str | None = None
    # time.perf_counter() when the request arrived: the `requested` stage is that long before
    # the lease statement's now() (one clock, so no skew between the API's and Postgres's).
    requested_at: float | None = None


@dataclass(frozen=True)
class EndedSession:
    id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    machine_id: str | None
    epoch: int | None
    template: str
    region: str
    reason: str
    status: SessionStatus


_SESSION_COLUMNS = """id, project_id, user_id, container_id AS machine_id, status, created_at,
    last_activity, config, template, region, device_type, lease_epoch, expires_at,
    idle_timeout_seconds, ended_at, end_reason, device"""

# What an EndedSession is read from, in its fields' order (`_ended_session`).
_ENDED_COLUMNS = "id, project_id, user_id, container_id, lease_epoch, template, region"


def _live() -> list[str]:
    """The live states, as the parameter of a `status = ANY(%s)`."""
    return [s.value for s in SessionStatus if s.is_live]


def _leaving(sources: Sequence[SessionStatus], target: SessionStatus) -> list[str]:
    """The guard of a statement that moves a session from one of `sources` to `target`, as the
    parameter of its `status = ANY(%s)`. Raises IllegalTransition if the table forbids the move
    from any of them: the caller asked for a move that is wrong whatever the row holds."""
    for source in sources:
        source.check_transition(target)
    return [source.value for source in sources]


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise LedgerConflict(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    except psycopg.Error as exc:
        # Anything else Postgres refuses: callers release what they hold on DataError.
        raise DataError(str(exc)) from exc


async def record_session(
    conn: Connection,
    new: NewSession,
    *,
    max_concurrent: int,
    machine_id: str | None,
    epoch: int | None,
    wake: bool = False,
    lease_kind: LeaseKind | None = None,
) -> SessionRow:
    """Insert a session (active with its ledger row when a machine was leased, booting without
    one; booting *with* its ledger row when the machine came from a suspended or stopped tier
    and must be woken first, `wake`), taking one of the user's live-session slots, in ONE
    statement (one round trip, its
    own transaction): the slot is an upsert on the user's counter row that only increments
    below `max_concurrent` — exact under concurrency, since the row lock serialises writers and
    the condition is re-checked on the latest row. Nothing is written when no slot is free.

    Raises ConcurrentLimitReached, or LedgerConflict when the ledger already holds that
    (machine, epoch) — the reaper fenced it because this commit came too late (the whole
    statement, the slot included, is then rolled back).

    The session's first stages go in the same statement: `requested`, `leased` (detail.kind:
    `lease_kind`; by default `ondemand` without a machine, `hot` with one that needs no wake)
    and, for a hot machine, `machine_ready`.
    """
    live = machine_id is not None and not wake
    status = SessionStatus.ACTIVE if live else SessionStatus.BOOTING
    if lease_kind is None and not wake:
        lease_kind = LeaseKind.HOT if machine_id is not None else LeaseKind.ONDEMAND
    params = _record_params(new, status, max_concurrent, machine_id, epoch)
    params["leased"] = Jsonb({"kind": lease_kind, "machine": machine_id, "status": status.value})
    params["ready"] = Jsonb({"machine": machine_id, "via": "hot"}) if live else None
    params["requested_ago"] = (
        0.0 if new.requested_at is None else max(0.0, time.perf_counter() - new.requested_at)
    )
    async with translated_errors():
        cursor = await conn.execute(_RECORD_SESSION, params)
        row = await cursor.fetchone()
    assert row is not None
    if row[1] is None:
        raise ConcurrentLimitReached(f"no free session slot, plan allows {max_concurrent}")
    return SessionRow(*row[1:])


_RECORD_SESSION = f"""
    WITH slot AS (
        INSERT INTO user_live_sessions AS u (user_id, live)
        SELECT %(user)s, 1 WHERE %(max_concurrent)s > 0
        ON CONFLICT (user_id) DO UPDATE SET live = u.live + 1
            WHERE u.live < %(max_concurrent)s
        RETURNING u.live
    ), inserted AS (
        INSERT INTO preview_sessions (id, project_id, user_id, container_id, status, config,
            template, region, device_type, lease_epoch, expires_at, idle_timeout_seconds, device)
        SELECT %(id)s, %(project)s, %(user)s, %(machine)s::text, %(status)s, %(config)s,
            %(template)s, %(region)s, %(device_type)s, %(epoch)s::bigint,
            now() + make_interval(secs => %(max_seconds)s), %(idle_seconds)s, %(device)s
        FROM slot
        RETURNING {_SESSION_COLUMNS}
    ), ledger AS (
        INSERT INTO machine_leases (machine_id, epoch, session_id, template, region)
        SELECT inserted.machine_id, inserted.lease_epoch, inserted.id, inserted.template,
            inserted.region
        FROM inserted
        WHERE inserted.machine_id IS NOT NULL AND inserted.lease_epoch IS NOT NULL
    ), first_stages AS (
        INSERT INTO session_events (session_id, at, kind, detail)
        SELECT inserted.id, stage.at, stage.kind, stage.detail
        FROM inserted, (VALUES
            (1, now() - make_interval(secs => %(requested_ago)s), 'requested', '{{}}'::jsonb),
            (2, now(), 'leased', %(leased)s::jsonb),
            (3, now(), 'machine_ready', %(ready)s::jsonb)) AS stage(n, at, kind, detail)
        WHERE stage.detail IS NOT NULL
        ORDER BY stage.n
    )
    SELECT slot.live, inserted.* FROM (SELECT 1) AS one
    LEFT JOIN slot ON true LEFT JOIN inserted ON true"""


def _record_params(
    new: NewSession,
    status: SessionStatus,
    max_concurrent: int,
    machine_id: str | None,
    epoch: int | None,
) -> dict[str, Any]:
    return {
        "id": new.id,
        "project": new.project_id,
        "user": new.user_id,
        "machine": machine_id,
        "status": status.value,
        "config": Jsonb(new.config),
        "template": new.template,
        "region": new.region,
        "device_type": new.device_type,
        "device": new.device,
        "epoch": epoch,
        "max_seconds": new.max_session_seconds,
        "idle_seconds": new.idle_timeout_seconds,
        "max_concurrent": max_concurrent,
    }


async def attach_machine(
    conn: Connection, session_id: uuid.UUID, machine_id: str, epoch: int
) -> SessionRow | None:
    """Give a booting session the machine created for it; None when the session is no longer
    booting (deleted or failed meanwhile), in which case nothing is written."""
    target = SessionStatus.ACTIVE
    sources = _leaving([SessionStatus.BOOTING], target)
    async with translated_errors(), conn.transaction():
        cursor = conn.cursor(row_factory=class_row(SessionRow))
        await cursor.execute(
            f"""UPDATE preview_sessions
                SET status = %s, container_id = %s, lease_epoch = %s, last_activity = now()
                WHERE id = %s AND status = ANY(%s)
                RETURNING {_SESSION_COLUMNS}""",
            (target.value, machine_id, epoch, session_id, sources),
        )
        session = await cursor.fetchone()
        if session is None:
            return None
        await _insert_lease(conn, session, machine_id, epoch)
        await _add_stage(
            conn, session_id, Stage.MACHINE_READY, {"machine": machine_id, "via": "booted"}
        )
    return session


async def activate_session(
    conn: Connection, session_id: uuid.UUID, machine_id: str, epoch: int
) -> SessionRow | None:
    """A booting session whose machine (leased from a suspended or stopped tier, its ledger row
    already committed) is now up becomes active. None when the session is no longer booting on
    that lease (ended meanwhile, or a stale job): nothing is written."""
    target = SessionStatus.ACTIVE
    sources = _leaving([SessionStatus.BOOTING], target)
    async with translated_errors(), conn.transaction():
        cursor = conn.cursor(row_factory=class_row(SessionRow))
        await cursor.execute(
            f"""UPDATE preview_sessions SET status = %s, last_activity = now()
                WHERE id = %s AND status = ANY(%s) AND container_id = %s
                    AND lease_epoch = %s
                RETURNING {_SESSION_COLUMNS}""",
            (target.value, session_id, sources, machine_id, epoch),
        )
        session = await cursor.fetchone()
        if session is None:
            return None
        await _add_stage(
            conn, session_id, Stage.MACHINE_READY, {"machine": machine_id, "via": "woken"}
        )
    return session


async def _insert_lease(conn: Connection, session: SessionRow, machine_id: str, epoch: int) -> None:
    await conn.execute(
        """INSERT INTO machine_leases (machine_id, epoch, session_id, template, region)
           VALUES (%s, %s, %s, %s, %s)""",
        (machine_id, epoch, session.id, session.template, session.region),
    )


async def fence_lease(
    conn: Connection, machine_id: str, epoch: int, template: str, region: str
) -> bool:
    """Claim (machine, epoch) for the reaper. True: no lease committed, the reaper owns the
    reclaim and any later commit of that lease fails. False: the lease did commit."""
    async with translated_errors():
        cursor = await conn.execute(
            """INSERT INTO machine_leases (machine_id, epoch, kind, template, region,
                                           released_at, release_reason)
               VALUES (%s, %s, 'fence', %s, %s, now(), 'never committed')
               ON CONFLICT (machine_id, epoch) DO NOTHING
               RETURNING id""",
            (machine_id, epoch, template, region),
        )
        return await cursor.fetchone() is not None


async def lease_released(conn: Connection, machine_id: str, epoch: int) -> bool:
    """Whether the committed lease (machine, epoch) has been released already: its session
    ended before anyone promoted the lease in Redis."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT released_at IS NOT NULL FROM machine_leases
               WHERE machine_id = %s AND epoch = %s AND kind = 'lease'""",
            (machine_id, epoch),
        )
        row = await cursor.fetchone()
    return row is not None and bool(row[0])


async def get_session(
    conn: Connection, session_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> SessionRow | None:
    """A session by id; with `user_id`, only if it belongs to that user."""
    cursor = conn.cursor(row_factory=class_row(SessionRow))
    async with translated_errors():
        await cursor.execute(
            f"SELECT {_SESSION_COLUMNS} FROM preview_sessions "
            "WHERE id = %s AND (%s::uuid IS NULL OR user_id = %s)",
            (session_id, user_id, user_id),
        )
        return await cursor.fetchone()


async def list_sessions(
    conn: Connection, user_id: uuid.UUID, project_id: uuid.UUID | None, limit: int = 100
) -> list[SessionRow]:
    cursor = conn.cursor(row_factory=class_row(SessionRow))
    async with translated_errors():
        await cursor.execute(
            f"""SELECT {_SESSION_COLUMNS} FROM preview_sessions
                WHERE user_id = %s AND (%s::uuid IS NULL OR project_id = %s)
                ORDER BY created_at DESC LIMIT %s""",
            (user_id, project_id, project_id, limit),
        )
        return await cursor.fetchall()


async def touch_session(conn: Connection, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Record activity on a live session of this user; False when there is none."""
    async with translated_errors():
        cursor = await conn.execute(
            """UPDATE preview_sessions SET last_activity = now()
               WHERE id = %s AND user_id = %s AND status = ANY(%s)""",
            (session_id, user_id, _live()),
        )
        return cursor.rowcount == 1


async def record_activity(conn: Connection, session_id: uuid.UUID) -> bool:
    """An editor frame arrived for this session (the gateway calls this at most every few
    seconds per socket): the idle clock restarts. False when the session is not live."""
    async with translated_errors():
        cursor = await conn.execute(
            """UPDATE preview_sessions SET last_activity = now()
               WHERE id = %s AND status = ANY(%s)""",
            (session_id, _live()),
        )
        return cursor.rowcount == 1


async def sessions_to_warn(conn: Connection, *, warn_seconds: int) -> list[tuple[uuid.UUID, int]]:
    """Active sessions that will end for inactivity within their warning window (the smaller
    of `warn_seconds` and half their idle timeout) and whose editors were not warned since their
    last activity: marks them warned and returns (id, seconds left)."""
    async with translated_errors():
        cursor = await conn.execute(
            """UPDATE preview_sessions SET idle_warned_at = now()
               WHERE status = %s
                 AND last_activity < now() - make_interval(
                     secs => idle_timeout_seconds - least(%s, idle_timeout_seconds / 2))
                 AND last_activity >= now() - make_interval(secs => idle_timeout_seconds)
                 AND expires_at > now()
                 AND (idle_warned_at IS NULL OR idle_warned_at < last_activity)
               RETURNING id, greatest(0, ceil(extract(epoch FROM last_activity
                   + make_interval(secs => idle_timeout_seconds) - now())))::int""",
            (SessionStatus.ACTIVE.value, warn_seconds),
        )
        return [(r[0], r[1]) for r in await cursor.fetchall()]


async def end_session(
    conn: Connection,
    session_id: uuid.UUID,
    *,
    reason: str,
    user_id: uuid.UUID | None = None,
    status: SessionStatus = SessionStatus.ENDED,
) -> EndedSession | None:
    """End a live session and release its ledger row in one transaction. Returns what the
    caller must release in Redis, or None when the session was not live (already ended, or not
    this user's): ending is idempotent, and an ended session keeps its first end.

    Raises IllegalTransition when `status` is not one a live session may end in (a live
    state): nothing is written."""
    sources = _leaving([s for s in SessionStatus if s.is_live], status)
    async with translated_errors(), conn.transaction():
        cursor = await conn.execute(
            f"""UPDATE preview_sessions
                SET status = %s, ended_at = now(), end_reason = %s
                WHERE id = %s AND status = ANY(%s) AND (%s::uuid IS NULL OR user_id = %s)
                RETURNING {_ENDED_COLUMNS}""",
            (status.value, reason, session_id, sources, user_id, user_id),
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        ended = _ended_session(row, reason, status)
        await conn.execute(
            """UPDATE machine_leases SET released_at = now(), release_reason = %s
               WHERE session_id = %s AND released_at IS NULL""",
            (reason, session_id),
        )
        # The session left the live states: its slot is free again.
        await conn.execute(
            "UPDATE user_live_sessions SET live = greatest(live - 1, 0) WHERE user_id = %s",
            (ended.user_id,),
        )
        await _add_stage(conn, session_id, Stage.ENDED, {"reason": reason, "status": status.value})
    return ended


async def find_sessions_to_reap(
    conn: Connection, *, booting_grace_seconds: int
) -> list[tuple[uuid.UUID, str]]:
    """Live sessions past their idle timeout, their maximum duration, or stuck booting."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT id, CASE
                   WHEN expires_at <= now() THEN 'max_duration'
                   WHEN status = %(booting)s THEN 'boot_timeout'
                   ELSE 'idle_timeout' END
               FROM preview_sessions
               WHERE status = ANY(%(live)s) AND (
                   expires_at <= now()
                   OR (status = %(active)s
                       AND last_activity < now() - make_interval(secs => idle_timeout_seconds))
                   OR (status = %(booting)s
                       AND created_at < now() - make_interval(secs => %(grace)s)))
               LIMIT 500""",
            {
                "live": _live(),
                "booting": SessionStatus.BOOTING.value,
                "active": SessionStatus.ACTIVE.value,
                "grace": booting_grace_seconds,
            },
        )
        return [(r[0], r[1]) for r in await cursor.fetchall()]


async def active_leases(conn: Connection) -> list[tuple[str, int, uuid.UUID]]:
    """(machine_id, epoch, session_id) of every unreleased lease."""
    async with translated_errors():
        cursor = await conn.execute(
            "SELECT machine_id, epoch, session_id FROM machine_leases WHERE released_at IS NULL"
        )
        return [(r[0], r[1], r[2]) for r in await cursor.fetchall()]


async def live_session_ids(conn: Connection, user_id: uuid.UUID) -> set[uuid.UUID]:
    async with translated_errors():
        cursor = await conn.execute(
            "SELECT id FROM preview_sessions WHERE user_id = %s AND status = ANY(%s)",
            (user_id, _live()),
        )
        return {r[0] for r in await cursor.fetchall()}


async def recently_ended(conn: Connection, within_seconds: int) -> list[EndedSession]:
    """The sessions that ended in the last `within_seconds` (`reason`: the end's, else the
    status; `machine_id` and `epoch` as the row last held them)."""
    async with translated_errors():
        cursor = await conn.execute(
            f"""SELECT {_ENDED_COLUMNS}, coalesce(end_reason, status), status
                FROM preview_sessions WHERE ended_at > now() - make_interval(secs => %s)""",
            (within_seconds,),
        )
        return [_ended_session(r, r[7], SessionStatus(r[8])) for r in await cursor.fetchall()]


def _ended_session(row: Sequence[Any], reason: str, status: SessionStatus) -> EndedSession:
    session_id, project_id, user_id, machine_id, epoch, template, region = row[:7]
    return EndedSession(
        session_id, project_id, user_id, machine_id, epoch, template, region, reason, status
    )


async def _add_stage(
    conn: Connection, session_id: uuid.UUID, stage: Stage, detail: dict[str, Any]
) -> None:
    """The session reached `stage` (sql.timelines): the first write of a stage wins."""
    await conn.execute(
        f"""INSERT INTO session_events (session_id, kind, detail) VALUES (%s, %s, %s)
            ON CONFLICT {ONCE} DO NOTHING""",
        (session_id, stage.value, Jsonb(detail)),
    )


async def repair_live_counts(conn: Connection) -> int:
    """Set every user's slot counter to the live sessions Postgres holds (drift repair for the
    reconciler: a session ended by hand in SQL would otherwise keep its slot). Returns how many
    counters changed.

    The counters are locked first, in their own statement: the count that follows then takes
    its snapshot after every lease that got in before the lock has committed, so a lease racing
    the repair is never undercounted."""
    async with translated_errors(), conn.transaction():
        await conn.execute("SELECT 1 FROM user_live_sessions FOR UPDATE")
        cursor = await conn.execute(
            """WITH actual AS (
                   SELECT u.user_id, count(s.id) AS n
                   FROM user_live_sessions u
                   LEFT JOIN preview_sessions s
                       ON s.user_id = u.user_id AND s.status = ANY(%s)
                   GROUP BY u.user_id)
               UPDATE user_live_sessions u SET live = actual.n
               FROM actual WHERE u.user_id = actual.user_id AND u.live <> actual.n""",
            (_live(),),
        )
        return cursor.rowcount
