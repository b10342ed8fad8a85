"""Reaching a sandboxed local machine's Vite from the benchmark.

A local machine runs in its own network namespace (pool/providers/local_supervisor.py): its
Vite listens on the namespace's loopback, which the host cannot reach. The benchmark watches
Vite's HMR socket and loads pages straight from Vite as floors, so it opens those connections
inside the namespace: `setns(2)` in a short-lived thread (a thread's namespace is its own; a
socket keeps the namespace it was made in). Root only, as the sandbox itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def connect_in(pid: int, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    """A TCP connection to host:port made in the network namespace of process `pid`."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def run() -> None:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns into {pid}'s network: {os.strerror(errno)}")
            made.append(socket.create_connection((host, port), timeout))
        except BaseException as exc:  # reported in the caller's thread
            failed.append(exc)
        finally:
            os.close(fd)

    worker = threading.Thread(target=run, name=f"netns-{pid}")
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    made[0].settimeout(None)
    return made[0]


@contextlib.contextmanager
def forward(pid: int, port: int) -> Iterator[int]:
    """A port on the host's loopback that forwards each connection to port `port` inside the
    network namespace of process `pid` (for a browser, which cannot enter it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = connect_in(pid, port)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(source, target), daemon=True).start()

    acceptor = threading.Thread(target=serve, name="netns-forward", daemon=True)
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        listener.close()
