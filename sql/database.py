"""Opening the Postgres connection pool."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool

from sql.errors import DatabaseUnavailable


async def open_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, timeout: float = 10.0
) -> AsyncConnectionPool:
    """Open a pool and wait until it holds `min_size` connections, so a bad DSN fails at start-up
    with one clear error rather than on the first request."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        # Autocommit by default: every multi-statement write opens an explicit transaction.
        kwargs={"autocommit": True},
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except (psycopg.Error, TimeoutError) as exc:
        await pool.close()
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    return pool
