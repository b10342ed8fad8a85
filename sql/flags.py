"""The feature flags of the move from Appetize (migration 0007): the global row (kill switch,
rollout percentage), per-user, per-project and per-plan overrides, and their audit.

Every write runs in one transaction that first locks the global row: flag changes are rare,
and serialising them all on one lock makes each audit row's old value the value the change
really replaced, even for two admins setting the same override at once. Nothing is written for
a "change" to the value already stored, so the audit holds changes only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg import sql as pgsql
from psycopg.rows import class_row

from sql.errors import UnknownReference
from sql.sessions import translated_errors

Connection = AsyncConnection[Any]


class Scope(StrEnum):
    """What an override names."""

    USER = "user"
    PROJECT = "project"
    PLAN = "plan"


# scope -> (its flag table, that table's key column, the table the key names, its key)
_TABLES: dict[Scope, tuple[str, str, str, str]] = {
    Scope.USER: ("preview_user_flags", "user_id", "auth.users", "id"),
    Scope.PROJECT: ("preview_project_flags", "project_id", "projects", "id"),
    Scope.PLAN: ("preview_plan_flags", "plan", "plans", "name"),
}


@dataclass(frozen=True)
class GlobalFlags:
    kill_switch: bool
    percentage: Decimal
    updated_at: datetime


@dataclass(frozen=True)
class Override:
    scope: Scope
    subject: str  # the user's or project's id, or the plan's name, as text
    backend: str
    updated_at: datetime


@dataclass(frozen=True)
class StoredFlags:
    rollout: GlobalFlags
    overrides: list[Override]


@dataclass(frozen=True)
class Actor:
    """Who changes a flag: an admin of the API (`id` their user id) or the CLI (`id` None)."""

    id: uuid.UUID | None
    name: str


@dataclass(frozen=True)
class FlagChange:
    """One row of the audit. `old`/`new` are JSON values; None: no override (or the row
    predates the flag)."""

    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor: str
    flag: str
    old: Any
    new: Any


def flag_name(scope: Scope, subject: uuid.UUID | str) -> str:
    return f"{scope.value}:{subject}"


async def load_flags(conn: Connection) -> StoredFlags:
    async with translated_errors():
        cursor = conn.cursor(row_factory=class_row(GlobalFlags))
        await cursor.execute(
            "SELECT kill_switch, percentage, updated_at FROM preview_rollout WHERE id"
        )
        rollout = await cursor.fetchone()
        overrides = await conn.execute(
            """SELECT 'user', user_id::text, backend, updated_at FROM preview_user_flags
               UNION ALL
               SELECT 'project', project_id::text, backend, updated_at FROM preview_project_flags
               UNION ALL
               SELECT 'plan', plan, backend, updated_at FROM preview_plan_flags
               ORDER BY 1, 2"""
        )
        rows = await overrides.fetchall()
    if rollout is None:
        raise LookupError("preview_rollout has no row: migrations not applied?")
    return StoredFlags(rollout, [Override(Scope(r[0]), r[1], r[2], r[3]) for r in rows])


async def set_rollout(
    conn: Connection,
    actor: Actor,
    *,
    kill_switch: bool | None = None,
    percentage: Decimal | None = None,
) -> tuple[GlobalFlags, list[FlagChange]]:
    """Set what is not None; return the row as it now is and the changes recorded (empty when
    both were already so). The caller checks the range; the table's CHECK holds it anyway."""
    async with translated_errors(), conn.transaction():
        cursor = await conn.execute(
            "SELECT kill_switch, percentage FROM preview_rollout WHERE id FOR UPDATE"
        )
        old = await cursor.fetchone()
        if old is None:
            raise LookupError("preview_rollout has no row: migrations not applied?")
        changes = []
        if kill_switch is not None and kill_switch != old[0]:
            changes.append(await _audit(conn, actor, "killSwitch", "boolean", old[0], kill_switch))
        if percentage is not None and percentage != old[1]:
            changes.append(await _audit(conn, actor, "percentage", "numeric", old[1], percentage))
        updated = conn.cursor(row_factory=class_row(GlobalFlags))
        await updated.execute(
            """UPDATE preview_rollout
               SET kill_switch = coalesce(%(kill)s, kill_switch),
                   percentage = coalesce(%(percentage)s, percentage),
                   updated_at = CASE WHEN %(changed)s THEN now() ELSE updated_at END
               WHERE id RETURNING kill_switch, percentage, updated_at""",
            {"kill": kill_switch, "percentage": percentage, "changed": bool(changes)},
        )
        row = await updated.fetchone()
    assert row is not None
    return row, changes


async def set_override(
    conn: Connection, actor: Actor, scope: Scope, subject: uuid.UUID | str, backend: str | None
) -> FlagChange | None:
    """Put (or, with `backend` None, remove) the override of one user, project or plan; return
    the change recorded, None when it was already so. Raises UnknownReference when the user,
    project or plan does not exist."""
    table, column, ref_table, ref_column = (pgsql.Identifier(*n.split(".")) for n in _TABLES[scope])
    async with translated_errors(), conn.transaction():
        await conn.execute("SELECT 1 FROM preview_rollout WHERE id FOR UPDATE")
        cursor = await conn.execute(
            pgsql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {ref} WHERE {ref_col} = %(s)s),"
                " (SELECT backend FROM {t} WHERE {col} = %(s)s)"
            ).format(ref=ref_table, ref_col=ref_column, t=table, col=column),
            {"s": subject},
        )
        found = await cursor.fetchone()
        assert found is not None
        if not found[0]:
            raise UnknownReference(f"no {scope.value} {subject}")
        if found[1] == backend:
            return None
        if backend is None:
            statement = pgsql.SQL("DELETE FROM {t} WHERE {col} = %(s)s")
        else:
            statement = pgsql.SQL(
                "INSERT INTO {t} ({col}, backend) VALUES (%(s)s, %(b)s)"
                " ON CONFLICT ({col}) DO UPDATE SET backend = excluded.backend, updated_at = now()"
            )
        await conn.execute(statement.format(t=table, col=column), {"s": subject, "b": backend})
        return await _audit(conn, actor, flag_name(scope, subject), "text", found[1], backend)


async def _audit(
    conn: Connection, actor: Actor, flag: str, sql_type: str, old: Any, new: Any
) -> FlagChange:
    # to_jsonb in SQL, from the value's own type: a numeric percentage keeps its digits.
    cursor = conn.cursor(row_factory=class_row(FlagChange))
    await cursor.execute(
        pgsql.SQL(
            "INSERT INTO preview_flag_audit (actor_id, actor, flag, old_value, new_value)"
            " VALUES (%s, %s, %s, to_jsonb(%s::{type}), to_jsonb(%s::{type}))"
            " RETURNING id, at, actor_id, actor, flag, old_value AS old, new_value AS new"
        ).format(type=pgsql.SQL(sql_type)),
        (actor.id, actor.name, flag, old, new),
    )
    change = await cursor.fetchone()
    assert change is not None
    return change


async def list_changes(
    conn: Connection, *, limit: int, before: int | None = None, flag: str | None = None
) -> list[FlagChange]:
    """The audit, newest first: at most `limit` changes older than the change `before` (an
    id), only those of `flag` when given."""
    cursor = conn.cursor(row_factory=class_row(FlagChange))
    async with translated_errors():
        await cursor.execute(
            """SELECT id, at, actor_id, actor, flag, old_value AS old, new_value AS new
               FROM preview_flag_audit
               WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
                 AND (%(flag)s::text IS NULL OR flag = %(flag)s)
               ORDER BY id DESC LIMIT %(limit)s""",
            {"before": before, "flag": flag, "limit": limit},
        )
        return await cursor.fetchall()


@dataclass(frozen=True)
class BackendContext:
    """What deciding a backend needs beyond the flags, read in one round trip."""

    can_access_project: bool
    plan: str
    template: str | None  # the project's saved preview configuration (migration 0008)
    device_type: str | None
    fallback_reason: str | None  # the latest fallback of this project and user in the window


async def load_backend_context(
    conn: Connection, user_id: uuid.UUID, project_id: uuid.UUID, fallback_seconds: float
) -> BackendContext:
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT
                   EXISTS (SELECT 1 FROM projects p WHERE p.id = %(project)s
                           AND (p.owner_id = %(user)s OR EXISTS (
                               SELECT 1 FROM project_members m
                               WHERE m.project_id = p.id AND m.user_id = %(user)s))),
                   coalesce(q.plan, 'free'), c.template, c.device_type,
                   (SELECT f.reason FROM preview_fallbacks f
                    WHERE f.project_id = %(project)s AND f.user_id = %(user)s
                      AND f.at > now() - make_interval(secs => %(window)s)
                    ORDER BY f.at DESC LIMIT 1)
               FROM (SELECT 1) AS one
               LEFT JOIN user_quotas q ON q.user_id = %(user)s
               LEFT JOIN project_preview_configs c ON c.project_id = %(project)s""",
            {"project": project_id, "user": user_id, "window": fallback_seconds},
        )
        row = await cursor.fetchone()
    assert row is not None
    return BackendContext(bool(row[0]), *row[1:])
