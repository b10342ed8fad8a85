"""Opening the Postgres connection pool.

Getting a connection is the one place where psycopg_pool raises outside a query (PoolTimeout
when none comes free in time, PoolClosed), so that is translated here, once: every caller of
`pool.connection()` sees `DatabaseUnavailable`, as it does for a query that fails mid-way
(sql.sessions.translated_errors). The wait for a connection is short (`acquire_timeout`): during
an outage a request fails within seconds, and the API answers 503 with Retry-After, instead of
hanging for psycopg_pool's default 30 s and then failing with an error nobody translated.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from sql.errors import DatabaseUnavailable

DEFAULT_ACQUIRE_TIMEOUT = 3.0
# psycopg_pool replaces a lost connection with attempts 1, 2, 4, 8 … s apart, until this many
# seconds, then drops it and grows again when a caller waits. Its default (300 s) let the gap
# between attempts reach 32 s: a 40 s outage was followed by ~20 s more of 503s. Here the gap
# stays under 4 s, so the pool is back within seconds of Postgres, however long the outage.
RECONNECT_TIMEOUT = 10.0


class ConnectionPool(AsyncConnectionPool):
    """psycopg's pool, with a failure to hand out a connection translated at the boundary."""

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection[Any]:
        try:
            return await super().getconn(timeout)
        except psycopg.OperationalError as exc:  # PoolTimeout, PoolClosed, TooManyRequests
            raise DatabaseUnavailable(f"no Postgres connection: {exc}") from exc


async def open_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout: float = 10.0,
    acquire_timeout: float = DEFAULT_ACQUIRE_TIMEOUT,
) -> AsyncConnectionPool:
    """Open a pool and wait until it holds `min_size` connections, so a bad DSN fails at start-up
    with one clear error rather than on the first request. Afterwards a caller waits at most
    `acquire_timeout` seconds for a connection, then gets DatabaseUnavailable."""
    pool: AsyncConnectionPool = ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=acquire_timeout,
        reconnect_timeout=RECONNECT_TIMEOUT,
        # A connection is checked (an empty query) as it is handed out: after Postgres restarts,
        # the pool's idle connections are dead, and each would otherwise fail one request.
        check=AsyncConnectionPool.check_connection,
        # Autocommit by default: every multi-statement write opens an explicit transaction.
        kwargs={"autocommit": True},
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except (psycopg.Error, TimeoutError) as exc:
        await pool.close()
        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    return pool
