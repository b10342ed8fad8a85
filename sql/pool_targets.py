"""Operator-set pool bounds per (template, region)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from sql.sessions import translated_errors


@dataclass
class PoolTarget:
    template: str
    region: str
    min_size: int
    max_size: int


async def list_targets(conn: AsyncConnection[Any]) -> list[PoolTarget]:
    cursor = conn.cursor(row_factory=class_row(PoolTarget))
    async with translated_errors():
        await cursor.execute(
            "SELECT template, region, min_size, max_size FROM pool_targets ORDER BY 1, 2"
        )
        return await cursor.fetchall()


async def set_target(
    conn: AsyncConnection[Any], target: PoolTarget, updated_by: uuid.UUID | None
) -> None:
    async with translated_errors():
        await conn.execute(
            """INSERT INTO pool_targets (template, region, min_size, max_size, updated_by)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (template, region) DO UPDATE
               SET min_size = excluded.min_size, max_size = excluded.max_size,
                   updated_by = excluded.updated_by, updated_at = now()""",
            (target.template, target.region, target.min_size, target.max_size, updated_by),
        )
