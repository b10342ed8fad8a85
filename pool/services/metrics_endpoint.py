"""`GET /metrics` on a port of its own: the process's Prometheus registry, for Fly's managed
Prometheus (fly.toml `[metrics]`) or any scraper.

A raw asyncio responder rather than a second ASGI app: it answers one request per connection
(HTTP/1.0 style, `Connection: close`), never shares the public port, and costs nothing between
scrapes. `collect`, when given, runs before each render (bounded by COLLECT_TIMEOUT_SECONDS):
the web uses it to check its stores, so that `preview_store_up` is as fresh as the scrape.

Every connection's handler task is owned here: `serve_metrics` cancels and awaits them when it
closes, so none outlives the process's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from pool.core.prometheus import CONTENT_TYPE, Registry

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 5.0
COLLECT_TIMEOUT_SECONDS = 3.0
MAX_HEAD_BYTES = 8192

Collect = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Listen:
    """Where to serve. host None: every interface (Fly's scraper comes over the private
    IPv6 network); port 0: any free port (dev, tests)."""

    host: str | None
    port: int


class MetricsEndpoint:
    def __init__(self, registry: Registry, collect: Collect | None = None) -> None:
        self._registry = registry
        self._collect = collect
        self._handlers: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, body, content_type = await self._answer(reader)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a scraper that went away or never finished its request: nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, bytes, str]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return "431 Request Header Fields Too Large", b"", "text/plain"
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if path != "/metrics":
            return "404 Not Found", b"not found\n", "text/plain"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if self._collect is not None:
            try:
                async with asyncio.timeout(COLLECT_TIMEOUT_SECONDS):
                    await self._collect()
            except Exception as exc:  # the figures already kept are still worth serving
                log.warning("metrics: collecting before a scrape failed: %r", exc)
        body = self._registry.render().encode()
        return "200 OK", b"" if method == "HEAD" else body, CONTENT_TYPE

    async def aclose(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@contextlib.asynccontextmanager
async def serve_metrics(
    registry: Registry, listen: Listen, collect: Collect | None = None
) -> AsyncIterator[int]:
    """Serve `registry` for the block; yields the port it listens on."""
    endpoint = MetricsEndpoint(registry, collect)
    try:
        server = await asyncio.start_server(
            endpoint.handle, listen.host, listen.port, limit=MAX_HEAD_BYTES
        )
    except OSError as exc:
        # Two processes on one host (a Procfile's web and worker) must not share the port.
        raise OSError(
            f"PREVIEW_METRICS_PORT: cannot serve /metrics on port {listen.port}: {exc} "
            "(give each process on this host its own port, or 0 to turn it off)"
        ) from exc
    port = int(server.sockets[0].getsockname()[1])
    log.info("metrics: http://%s:%d/metrics", listen.host or "*", port)
    try:
        yield port
    finally:
        server.close()
        await endpoint.aclose()
        await server.wait_closed()
