"""A TCP relay in front of a store, which a test can cut and restore.

The app under test connects to the proxy's port instead of Postgres' or Redis'; `cut()` closes
every relayed connection and stops listening (new connections are refused, as by a stopped
server), `restore()` listens on the same port again. The shared servers themselves are never
touched. The relay runs its own event loop in a thread, so it keeps relaying while the test
blocks on a subprocess or a synchronous client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

CHUNK = 64 * 1024
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379}


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self.port = 0

    def url(self, url: str) -> str:
        """`url` (a Postgres or Redis URL of the target) with the proxy as its host and port."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self._call(self._close())

    def restore(self) -> None:
        self._call(self._listen())

    @property
    def is_cut(self) -> bool:
        return self._server is None

    def _call(self, coroutine: object) -> None:
        assert asyncio.iscoroutine(coroutine)
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for relay in list(self._relays):
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        relays = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._relays.update(relays)
        try:
            await asyncio.gather(*relays, return_exceptions=True)
        finally:
            self._relays.difference_update(relays)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side closed: close both, as a server that went away would.
            writer.transport.abort()


@contextlib.contextmanager
def tcp_proxy(target_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the server of `target_url`; `proxy.url(target_url)` reaches it."""
    parts = urlsplit(target_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORTS[parts.scheme])
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
