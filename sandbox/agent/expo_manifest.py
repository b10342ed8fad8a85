"""Expo manifests through the front: every URL in them names the host the client asked for.

Expo Go (on a phone, or on an Appetize device) opens a session by fetching its manifest: `GET /`
with an `expo-platform: ios|android` header. Expo CLI builds the manifest's URLs (the bundle,
`hostUri`, `debuggerHost`) from the request's `Host` without its port, then adds the port Metro
itself listens on, which is an internal loopback port nobody outside can reach. So the front
fetches the manifest itself and puts back the host exactly as the client sent it, port
included (`x-forwarded-proto`, which Expo CLI reads for the scheme, passes through as sent).
Every later request of the phone (bundles, assets, the HMR socket) then comes back through the
same door, on the same host, with whatever credential that host carries (app.preview_proxy).

Only manifest requests are buffered; everything else streams through the front unchanged.
"""

from __future__ import annotations

import asyncio

from sandbox.agent.probe import HOST, has_bare_line_break, parse_response

MAX_MANIFEST = 4 * 1024 * 1024
TIMEOUT = 60.0
PLATFORM_HEADER = b"expo-platform"
# Framing of the answer is the front's own; the rest of Metro's head goes out as it came.
_REFRAMED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


def is_manifest_request(request_line: bytes, headers: list[bytes]) -> bool:
    method, _, rest = request_line.partition(b" ")
    target = rest.partition(b" ")[0]
    return (
        method == b"GET"
        and target.partition(b"?")[0] == b"/"
        and any(_name(line) == PLATFORM_HEADER for line in headers)
    )


def public_host(headers: list[bytes]) -> bytes | None:
    hosts = [line.split(b":", 1)[1].strip() for line in headers if _name(line) == b"host"]
    return hosts[-1] if hosts else None


def rewrite(body: bytes, host: bytes, metro_port: int) -> bytes:
    """`body` with Metro's `{hostname}:{port}` replaced by the client's `Host`, as sent."""
    hostname = _strip_port(host)
    return body.replace(hostname + b":" + str(metro_port).encode(), host)


async def relay(
    writer: asyncio.StreamWriter, head: bytes, headers: list[bytes], metro_port: int
) -> None:
    """Fetch the manifest from Metro with the client's request head; answer it rewritten."""
    host = public_host(headers)
    async with asyncio.timeout(TIMEOUT):
        reader, upstream = await asyncio.open_connection(HOST, metro_port)
        try:
            upstream.write(head)
            await upstream.drain()
            raw = await reader.read(MAX_MANIFEST + 1)
            while len(raw) <= MAX_MANIFEST and (chunk := await reader.read(65536)):
                raw += chunk
        finally:
            upstream.close()
    if len(raw) > MAX_MANIFEST:
        raise OSError(f"the manifest is over {MAX_MANIFEST} bytes")
    if has_bare_line_break(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"):
        # As the front's own relay does: a lone LF could hide a Fly-Replay from the filter.
        raise ValueError("Metro's manifest head has a bare line break")
    response = parse_response(raw)
    body = rewrite(response.body, host, metro_port) if host else response.body
    status_line = raw.partition(b"\r\n")[0]
    kept = [
        name + b": " + value
        for name, value in response.headers.items()
        if name not in _REFRAMED and not name.startswith(b"fly-")
    ]
    framing = [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    writer.write(b"\r\n".join([status_line, *kept, *framing, b"", b""]) + body)
    await writer.drain()


def _name(line: bytes) -> bytes:
    return line.split(b":", 1)[0].strip().lower()


def _strip_port(host: bytes) -> bytes:
    name, sep, port = host.rpartition(b":")
    return name if sep and port.isdigit() else host
