"""Operator-set pool bounds per (template, region): the hot tier's min/max (min_size/max_size),
the suspended and stopped tiers' min/max, and the machines' guest size."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from sql.sessions import translated_errors


@dataclass
class PoolTarget:
    """A pool's operator settings. Read from the table, every field is what is stored (tiers
    0/0 and guest None when never set). Written with set_target, a tier or guest field left
    None keeps what is stored (0/0 and no guest for a new row), so a client that only knows
    min/max never clears the tiers."""

    template: str
    region: str
    min_size: int
    max_size: int
    suspended_min: int | None = None
    suspended_max: int | None = None
    stopped_min: int | None = None
    stopped_max: int | None = None
    guest_cpus: int | None = None
    guest_memory_mb: int | None = None


_COLUMNS = """template, region, min_size, max_size, suspended_min, suspended_max, stopped_min,
    stopped_max, guest_cpus, guest_memory_mb"""


async def list_targets(conn: AsyncConnection[Any]) -> list[PoolTarget]:
    cursor = conn.cursor(row_factory=class_row(PoolTarget))
    async with translated_errors():
        await cursor.execute(f"SELECT {_COLUMNS} FROM pool_targets ORDER BY 1, 2")
        return await cursor.fetchall()


async def get_target(conn: AsyncConnection[Any], template: str, region: str) -> PoolTarget | None:
    cursor = conn.cursor(row_factory=class_row(PoolTarget))
    async with translated_errors():
        await cursor.execute(
            f"SELECT {_COLUMNS} FROM pool_targets WHERE template = %s AND region = %s",
            (template, region),
        )
        return await cursor.fetchone()


async def set_target(
    conn: AsyncConnection[Any], target: PoolTarget, updated_by: uuid.UUID | None
) -> PoolTarget:
    """Store the target (None fields keep what is stored) and return the row as it now is.
    Raises DataError when a bound pair is inverted or out of range (the table's checks)."""
    cursor = conn.cursor(row_factory=class_row(PoolTarget))
    async with translated_errors():
        await cursor.execute(
            f"""INSERT INTO pool_targets AS t (template, region, min_size, max_size,
                    suspended_min, suspended_max, stopped_min, stopped_max, guest_cpus,
                    guest_memory_mb, updated_by)
                VALUES (%(template)s, %(region)s, %(min)s, %(max)s,
                    coalesce(%(smin)s, 0), coalesce(%(smax)s, 0),
                    coalesce(%(tmin)s, 0), coalesce(%(tmax)s, 0),
                    %(cpus)s, %(memory)s, %(by)s)
                ON CONFLICT (template, region) DO UPDATE
                SET min_size = excluded.min_size, max_size = excluded.max_size,
                    suspended_min = coalesce(%(smin)s, t.suspended_min),
                    suspended_max = coalesce(%(smax)s, t.suspended_max),
                    stopped_min = coalesce(%(tmin)s, t.stopped_min),
                    stopped_max = coalesce(%(tmax)s, t.stopped_max),
                    guest_cpus = coalesce(%(cpus)s, t.guest_cpus),
                    guest_memory_mb = coalesce(%(memory)s, t.guest_memory_mb),
                    updated_by = excluded.updated_by, updated_at = now()
                RETURNING {_COLUMNS}""",
            {
                "template": target.template,
                "region": target.region,
                "min": target.min_size,
                "max": target.max_size,
                "smin": target.suspended_min,
                "smax": target.suspended_max,
                "tmin": target.stopped_min,
                "tmax": target.stopped_max,
                "cpus": target.guest_cpus,
                "memory": target.guest_memory_mb,
                "by": updated_by,
            },
        )
        stored = await cursor.fetchone()
    assert stored is not None
    return stored
