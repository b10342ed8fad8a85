"""One HTTP request to a local preview machine, its response streamed to the ASGI server.

Only the local provider proxies through the web process, and there every module the page
imports is a request through here: a dozen per first load, in waves that follow the import
graph, so each request's overhead is paid several times in a row. httpx added ~3.5 ms per
small request on loopback (its pool, anyio streams and h11, for connections it could never
reuse: the machine's front answers one request per connection and closes). This is a plain
asyncio connection, the request written at once, and httptools (uvicorn's own parser, which
also undoes chunked framing) reading the answer.

The response is relayed as it arrives; a `Content-Length` from the machine is kept, so the
browser gets a framed response rather than one re-chunked by the ASGI server. A request body
is streamed the same way (`BodyStream`): with its declared length, or chunked when the browser
sent it chunked, so the web process holds a chunk of it at a time, never the whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit

import httptools
from starlette.types import Send

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
CHUNK = 1024 * 1024
# Sized for the largest module a first load fetches (react-dom's pre-bundle is ~1 MB), so it
# arrives in a few reads rather than sixteen 64 KiB ones.
BUFFER = 2 * 1024 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) and the framing this hop sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)


class UpstreamError(Exception):
    """The machine could not be reached or did not answer with an HTTP response."""


class BodyStream(Protocol):
    """A request body sent as it arrives. `length`: the declared length, None if unknown."""

    length: int | None

    def chunks(self) -> AsyncIterator[bytes]: ...


class _Response:
    """httptools' callbacks: what has arrived since the last read."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.head_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def request_head(
    method: str,
    target: str,
    authority: str,
    headers: list[tuple[bytes, bytes]],
    length: int | None,
) -> bytes:
    """The request as the machine gets it: one request per connection, our own framing
    (`length` None: a chunked body)."""
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"host: " + authority.encode()]
    lines += [name + b": " + value for name, value in headers]
    if length is None:
        lines.append(b"transfer-encoding: chunked")
    elif length or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
        lines.append(b"content-length: " + str(length).encode())
    lines += [b"connection: close", b"", b""]
    return b"\r\n".join(lines)


async def relay(
    address: str,
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes | BodyStream,
    send: Send,
    authority: str | None = None,
) -> None:
    """Send the request to `address` (`http://host:port`) and the answer to `send`.
    `authority` is the `Host` the machine gets (default: the address's own).

    Raises UpstreamError if nothing was sent to the browser yet; a machine that fails after
    the response started only cuts the body short. What `body.chunks()` raises (the browser
    left, the body is over a bound) propagates, with the machine's connection closed and
    nothing sent to the browser.
    """
    url = urlsplit(address)
    host = authority or url.netloc
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(url.hostname, url.port, limit=BUFFER)
    except (OSError, TimeoutError) as exc:
        raise UpstreamError(f"cannot connect to {address}: {exc}") from exc
    try:
        if isinstance(body, bytes) or body.length == 0:
            # Every module fetch: the request in one write, as before bodies were streamed.
            whole = body if isinstance(body, bytes) else b""
            writer.write(request_head(method, target, host, headers, len(whole)) + whole)
        else:
            writer.write(request_head(method, target, host, headers, body.length))
            await _send_body(writer, body)
        await _relay_response(reader, send, head_only=method == "HEAD")
    finally:
        writer.close()


async def _send_body(writer: asyncio.StreamWriter, body: BodyStream) -> None:
    chunked = body.length is None
    try:
        async for chunk in body.chunks():
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            # Backpressure: the next chunk is read from the browser once this one is on its way.
            async with asyncio.timeout(READ_TIMEOUT):
                await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        async with asyncio.timeout(READ_TIMEOUT):
            await writer.drain()
    except OSError:
        # The machine closed its side, perhaps after answering early (a 4xx before reading the
        # body): its answer, if there is one, is read next.
        return
    except TimeoutError as exc:
        raise UpstreamError("the machine stopped reading the request body") from exc


async def _relay_response(reader: asyncio.StreamReader, send: Send, *, head_only: bool) -> None:
    response = _Response()
    parser = httptools.HttpResponseParser(response)
    started = False
    while not response.complete:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                data = await reader.read(CHUNK)
            parser.feed_data(data)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            if started:
                return
            raise UpstreamError(f"no valid response: {exc}") from exc
        if response.head_done and not started:
            if head_only:
                # httptools expects a body after a HEAD answer's Content-Length.
                response.complete = True
            await send(
                {
                    "type": "http.response.start",
                    "status": parser.get_status_code(),
                    "headers": [
                        (name, value)
                        for name, value in response.headers
                        if name.lower() not in HOP_BY_HOP
                    ],
                }
            )
            started = True
        if response.chunks:
            body, response.chunks = b"".join(response.chunks), []
            await send({"type": "http.response.body", "body": body, "more_body": True})
        if not data:
            # The connection's end is the end of a body framed by neither length nor chunks.
            if not started:
                raise UpstreamError("the machine closed the connection without answering")
            break
    await send({"type": "http.response.body", "body": b"", "more_body": False})
