"""A Redis server of the test's own, on a free port, that a test may kill and start again.

The machine's shared Redis (127.0.0.1:6379) is never restarted by a test: other runs use it.
This one has no persistence by default, like the machine's: a restart comes back empty.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import redis

from tests.conftest import free_port

START_TIMEOUT = 10.0


class RedisServer:
    def __init__(self, root: Path, *extra: str) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        assert binary, "redis-server is needed for the fault tests"
        self.binary = binary
        self.root = root
        self.extra = extra
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "redis.log").open("ab") as log:
            self.process = self._spawn(log)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                assert time.monotonic() < deadline, "the test's Redis did not start"
                time.sleep(0.05)
        finally:
            client.close()

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL: what a crashed or evicted Redis looks like to its clients."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def restart_empty(self, down_for: float = 0.0) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()


@contextlib.contextmanager
def redis_server(root: Path, *extra: str) -> Iterator[RedisServer]:
    server = RedisServer(root, *extra)
    server.start()
    try:
        yield server
    finally:
        server.kill()
