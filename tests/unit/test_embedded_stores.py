"""tests/embedded_stores.py: which stores count as absent, and the URL the tests get for the
embedded Postgres."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg

from tests.conftest import free_port
from tests.embedded_stores import postgres_absent, redis_absent, server_url


def test_the_socket_uri_becomes_a_url_whose_database_the_tests_can_replace() -> None:
    url = server_url("postgresql://postgres:@/postgres?host=/srv/repo/.preview/pg")

    assert url == "postgresql://postgres@%2Fsrv%2Frepo%2F.preview%2Fpg/postgres"
    # As tests/conftest.py derives a test database's URL from it.
    derived = url.rpartition("/")[0] + "/po_test_1"
    assert psycopg.conninfo.conninfo_to_dict(derived) == {
        "user": "postgres",
        "host": "/srv/repo/.preview/pg",
        "dbname": "po_test_1",
    }


def test_a_port_that_refuses_is_absent_and_a_listening_one_is_not() -> None:
    closed = free_port()
    assert postgres_absent(f"postgresql://postgres@127.0.0.1:{closed}/postgres")
    assert redis_absent(f"redis://127.0.0.1:{closed}")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not postgres_absent(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        assert not redis_absent(f"redis://127.0.0.1:{port}")


def test_a_unix_socket_directory_without_the_socket_is_absent(tmp_path: Path) -> None:
    url = server_url(f"postgresql://postgres:@/postgres?host={tmp_path}")
    assert postgres_absent(url)
    (tmp_path / ".s.PGSQL.5432").touch()
    assert not postgres_absent(url)
