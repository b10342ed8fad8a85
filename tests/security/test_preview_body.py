"""Finding (issue 9, item 11): the local preview proxy held every request body whole before
sending it on (150 MiB took the web from 100 MB to 850 MB). Bodies are now streamed to the
machine and bounded by PREVIEW_PROXY_MAX_BODY_BYTES.

Against a real `web` process, whose peak resident memory (VmHWM, reset through clear_refs
before each upload) is what is measured; the machine is tests/security/machine.py, which keeps
only a body's length and hash.
"""

from __future__ import annotations

import hashlib
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.settings import Settings
from tests.integration.helpers import web_processes
from tests.security.machine import RecordingMachine, lease, recording_machine

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
LIMIT = 32 * MiB
BLOCK = b"0123456789abcdef" * (MiB // 16)


@dataclass
class Web:
    url: str
    pid: int
    origin_host: str
    cookie: str
    machine: RecordingMachine

    def upload(self, size: int, *, chunked: bool, declared: int | None = None) -> int | None:
        """POST `size` bytes (never held whole here either) and return the answer's status,
        None if the connection ended without one. Stops sending once an answer has come."""
        address = urlsplit(self.url)
        framing = "transfer-encoding: chunked" if chunked else f"content-length: {declared or size}"
        head = (
            f"POST /upload HTTP/1.1\r\nhost: {self.origin_host}\r\ncookie: {self.cookie}\r\n"
            f"content-type: application/octet-stream\r\n{framing}\r\nconnection: close\r\n\r\n"
        )
        with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
            conn.sendall(head.encode())
            _send_body(conn, size, chunked=chunked)
            received = b""
            try:
                while chunk := conn.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        if not received.startswith(b"HTTP/1.1 "):
            return None
        self.last_body = received.partition(b"\r\n\r\n")[2]
        return int(received.split(b" ", 2)[1])

    last_body: bytes = b""

    def reset_peak_memory(self) -> int:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_memory(self) -> int:
        return _status_kib(self.pid, "VmHWM") * 1024


def _send_body(conn: socket.socket, size: int, *, chunked: bool) -> None:
    sent = 0
    try:
        while sent < size:
            if select.select([conn], [], [], 0)[0]:
                return  # the web answered (or closed) early: nothing more is wanted
            piece = BLOCK[: min(len(BLOCK), size - sent)]
            conn.sendall(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    except OSError:
        return  # the web closed its side after answering


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _pid_listening(port: int) -> int:
    """The `web` process started with `--port port` (web_processes yields URLs only)."""
    wanted = ["web", "--host", "127.0.0.1", "--port", str(port)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv[-len(wanted) - 1 : -1] == wanted:
            return int(proc.name)
    raise AssertionError(f"no web process on port {port}")


def _expected_hash(size: int) -> str:
    digest, left = hashlib.sha256(), size
    while left:
        piece = BLOCK[: min(len(BLOCK), left)]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[Web]:
    env = {"PREVIEW_PROXY_MAX_BODY_BYTES": str(LIMIT)}
    with (
        recording_machine() as machine,
        web_processes(settings.database_url or "", tmp_path, 1, extra_env=env) as (url,),
    ):
        session: dict[str, Any] = lease(url, settings.database_url or "")
        port = urlsplit(url).port or 0
        found = Web(
            url,
            _pid_listening(port),
            urlsplit(session["previewUrl"]).netloc,
            f"preview_token={session['token']}",
            machine,
        )
        # Warm up: the first proxied upload loads what it needs, which is not the body's cost.
        assert found.upload(MiB, chunked=False) == 200
        machine.requests.clear()
        yield found
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_under_the_limit_is_streamed_to_the_machine_not_held(
    web: Web, chunked: bool
) -> None:
    size = 24 * MiB
    before = web.reset_peak_memory()

    assert web.upload(size, chunked=chunked) == 200

    growth = web.peak_memory() - before
    (seen,) = web.machine.requests
    assert (seen.length, seen.sha256) == (size, _expected_hash(size))
    assert growth < 8 * MiB, f"the web's peak memory grew by {growth / MiB:.1f} MiB"


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(web: Web) -> None:
    before = web.reset_peak_memory()

    status = web.upload(150 * MiB, chunked=False)

    assert status == 413
    assert f"limit of {LIMIT} bytes".encode() in web.last_body
    assert web.machine.requests == []
    assert web.peak_memory() - before < 8 * MiB


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit(web: Web) -> None:
    before = web.reset_peak_memory()

    status = web.upload(150 * MiB, chunked=True)

    growth = web.peak_memory() - before
    # The 413 goes out as soon as the limit is crossed; a client still sending may see the
    # connection reset before it reads it.
    assert status in (413, None)
    assert all(seen.length <= LIMIT for seen in web.machine.requests)
    assert growth < 8 * MiB, f"the web's peak memory grew by {growth / MiB:.1f} MiB"
