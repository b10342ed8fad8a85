"""The machine's HTTP front on `--port` (or an inherited listening socket, `--listen-fd`):
/healthz from the agent, everything else to Vite.

Why a front rather than a /healthz middleware inside Vite: the agent must answer health checks
while Vite boots, restarts after a crash or after its config changed, and whatever the user
does to vite.config.js (a hydrate may replace it). A health answer that comes from the agent
itself tells the provider the truth in all those cases, and the dev server's port can change
between restarts without the orchestrator noticing.

The proxy is byte-level and sees one request per connection. It reads the request head:
`/healthz` is answered here; anything else opens a connection to Vite, replays the head and
copies bytes both ways until both sides are done, so request bodies, streaming and the HMR
WebSocket upgrade pass through unchanged and the agent never parses more of HTTP than a head.
A plain request goes out with `Connection: close` in place of its own connection headers:
Vite closes after answering, and the client opens a new connection for its next request,
which is therefore inspected too (a kept-alive connection would carry a later `/healthz` to
Vite). The price, a loopback connection per request, is small next to what Vite does per
module.

Each connection is one task; `close` cancels them all (on Python 3.11 `wait_closed` does not
wait for handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from sandbox.agent import expo_manifest
from sandbox.agent.errors import AgentError
from sandbox.agent.probe import HOST, has_bare_line_break

logger = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT = 10.0
LINGER = 5.0
CHUNK = 1024 * 1024
# Stream buffers sized for Vite's pre-bundled dependencies (react-dom is megabytes with its
# source map): with asyncio's 64 KiB defaults the copy loop spends its time in flow control.
BUFFER = 4 * 1024 * 1024

Health = Callable[[], tuple[int, bytes]]
Upstream = Callable[[], int | None]


class Front:
    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        upstream: Upstream,
        sock: socket.socket | None = None,
        *,
        expo_manifests: bool = False,
    ) -> None:
        self._host, self._port = host, port
        # Bound by whoever started the agent: a local machine's sandbox has no network of
        # its own to listen on, so the provider hands it a socket of the host's.
        self._sock = sock
        self._health = health
        self._upstream = upstream
        # Metro templates: Expo Go's manifest requests are answered rewritten (expo_manifest).
        self._expo_manifests = expo_manifests
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            if self._sock is not None:
                self._server = await asyncio.start_server(
                    self._handle, sock=self._sock, limit=HEAD_LIMIT
                )
            else:
                self._server = await asyncio.start_server(
                    self._handle, self._host, self._port, limit=HEAD_LIMIT, reuse_address=True
                )
        except OSError as exc:
            raise AgentError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(HEAD_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        request_line, *headers = head[:-4].split(b"\r\n")
        target = request_line.split(b" ")
        path = target[1].split(b"?", 1)[0] if len(target) == 3 else b""
        if path == b"/healthz":
            status, body = self._health()
            await _respond(writer, status, body, "application/json")
            return
        port = self._upstream()
        if port is None:
            await _respond(writer, 503, b"preview is starting\n", "text/plain", retry=True)
            return
        if self._expo_manifests and expo_manifest.is_manifest_request(request_line, headers):
            try:
                await expo_manifest.relay(writer, _one_shot(request_line, headers), headers, port)
            except (OSError, TimeoutError, ValueError) as exc:
                logger.warning("Expo manifest not served: %s", exc)
                await _respond(writer, 502, b"the Expo manifest is unavailable\n", "text/plain")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, port, limit=BUFFER)
            up_writer.transport.set_write_buffer_limits(high=BUFFER)
            writer.transport.set_write_buffer_limits(high=BUFFER)
        except OSError:
            await _respond(
                writer, 502, b"preview dev server unreachable\n", "text/plain", retry=True
            )
            return
        up_writer.write(head if _is_upgrade(headers) else _one_shot(request_line, headers))
        upload = asyncio.create_task(_pipe(reader, up_writer))
        try:
            await relay_response_head(up_reader, writer)
            await _pipe(up_reader, writer)
            # Vite is done; a client that never closes its side must not hold the task.
            await asyncio.wait({upload}, timeout=LINGER)
        finally:
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
            up_writer.close()


def _is_upgrade(headers: list[bytes]) -> bool:
    return any(line.split(b":", 1)[0].strip().lower() == b"upgrade" for line in headers)


def _one_shot(request_line: bytes, headers: list[bytes]) -> bytes:
    """The request head with its connection headers replaced by `Connection: close`."""
    hop = {b"connection", b"keep-alive", b"proxy-connection"}
    kept = [line for line in headers if line.split(b":", 1)[0].strip().lower() not in hop]
    return b"\r\n".join([request_line, *kept, b"Connection: close", b"", b""])


async def relay_response_head(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy the dev server's response head(s) without Fly's routing headers.

    On Fly this front is behind Fly's proxy, which acts on `fly-replay` in a response. The dev
    server runs the user's code (vite.config.js is theirs to edit), so a response naming
    another machine could make the proxy deliver a request where the preview token was never
    checked. Interim 1xx heads (100 Continue) are followed by the real one, filtered too.
    """
    while True:
        try:
            head = await source.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            sink.write(exc.partial)  # no complete head: the client sees what there was
            return
        except asyncio.LimitOverrunError:
            sink.close()  # a head larger than the buffer is nothing a browser should get
            return
        if has_bare_line_break(head):
            # A lone LF or CR would end a header line for some parsers and not for this
            # filter: a `Fly-Replay` behind one would get through. Nothing sane sends that.
            logger.warning("dev server sent a response head with a bare line break; dropped")
            await _respond(sink, 502, b"the dev server's answer was malformed\n", "text/plain")
            return
        status_line, *lines = head[:-4].split(b"\r\n")
        kept = [line for line in lines if not line.lower().startswith(b"fly-")]
        sink.write(b"\r\n".join([status_line, *kept, b"", b""]))
        code = status_line.split(b" ", 2)[1] if status_line.count(b" ") >= 1 else b""
        if not code.startswith(b"1") or code == b"101":
            return


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        # One side went away: stop the other direction too.
        sink.close()


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, retry: bool = False
) -> None:
    reason = {200: "OK", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
        + ("Retry-After: 1\r\n" if retry else "")
        + "\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
