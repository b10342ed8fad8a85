"""The browser's request as the preview machine gets it (local provider): headers, body, and
the redirect that drops `?token=`.

Headers. Hop-by-hop ones stay on this hop, our cookie never leaves it, and the proxy facts
(`X-Forwarded-For/Proto/Host`) are stated by this hop from what uvicorn resolved: uvicorn
honours a client's `X-Forwarded-*` only from PREVIEW_TRUSTED_PROXIES, so whatever a browser
sends under those names (or as `Forwarded`, `X-Real-IP`, `Fly-*`) is dropped, not passed on
as if a proxy had said it. `Host` is the one the browser sent (the relay states it itself), as
Fly's replay keeps it: Expo's manifest is built from it. `Origin` goes through: Vite checks it
on its HMR socket (a socket without one counts as a non-browser client and skips Vite's token
check), and the router refuses a socket whose Origin is not the preview's own before it
reaches the machine.

Body. Streamed to the machine as it arrives, never held whole, and bounded by
PREVIEW_PROXY_MAX_BODY_BYTES: a declared length over the bound is refused before the machine
is contacted, a chunked body when it crosses the bound.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote, unquote_plus, urlsplit

from starlette.types import Receive, Scope

from app.preview_upstream import HOP_BY_HOP

# Request headers this hop does not pass on: hop-by-hop ones (RFC 9110 7.6.1), the framing and
# `Host` the upstream request sets itself, and `Expect` (this hop reads the body as it goes).
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# What a proxy says about the hops before it: only this hop may say it to the machine.
_PROXY_FACTS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-ssl",
        b"x-real-ip",
    }
)
# Characters a path or query keeps as they are when re-encoded (RFC 3986 pchar, `/`, `?`, and
# `%` of an escape that is already there); everything else is percent-encoded.
_SAFE = "/?:@!$&'()*+,;=-._~%"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BodyTooLarge(Exception):
    """The request body is over the proxy's bound; nothing more of it is read."""


class BrowserGone(Exception):
    """The browser disconnected before its request body was complete."""


def header(scope: Scope, name: bytes) -> str | None:
    """The header's last value, as the router reads `Host` (`dict(scope["headers"])`)."""
    found = None
    for key, value in scope["headers"]:
        if key == name:
            found = str(value.decode("latin-1"))
    return found


def upstream_headers(scope: Scope, cookie_name: str) -> list[tuple[bytes, bytes]]:
    """The browser's headers as the machine gets them, then this hop's proxy facts."""
    headers = []
    for name, value in scope["headers"]:
        if (
            name in _NOT_FORWARDED
            or name in _PROXY_FACTS
            or name.startswith((b"sec-websocket", b"fly-"))
        ):
            continue
        if name == b"cookie":
            # The preview token is ours; the user's dev server never sees it.
            rest = "; ".join(f"{k}={v}" for k, v in cookie_pairs(value) if k != cookie_name)
            if rest:
                headers.append((name, rest.encode("latin-1")))
            continue
        headers.append((name, value))
    return headers + _proxy_facts(scope)


def _proxy_facts(scope: Scope) -> list[tuple[bytes, bytes]]:
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    facts = [(b"x-forwarded-proto", scheme.encode())]
    if client := scope.get("client"):
        facts.append((b"x-forwarded-for", str(client[0]).encode("latin-1")))
    if host := header(scope, b"host"):
        facts.append((b"x-forwarded-host", host.encode("latin-1")))
    return facts


def cookie_pairs(header_value: bytes) -> list[tuple[str, str]]:
    """`Cookie: a=1; b=2` as the browser sends it (RFC 6265 5.4: no quoting, no attributes)."""
    pairs = []
    for part in header_value.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            pairs.append((name, value))
    return pairs


def same_origin(scope: Scope) -> bool:
    """Whether a socket comes from the preview's own pages: no `Origin` (not a browser; the
    cookie is the credential), or an http(s) Origin naming the very host the request is for.
    The scheme is not compared: behind a proxy that is not trusted the request's own scheme is
    unknown, and nobody else can serve pages from this host."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = (header(scope, b"host") or "").lower()
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host


def redirect_target(scope: Scope, drop_query: str) -> str:
    """The request's own target without the query parameter `drop_query`, for `Location`.

    Built from the path as the browser sent it (decoding it first would turn `%2F` into `/`
    and `%25` into `%`), with stray bytes percent-encoded (a header is ASCII, and CR or LF
    would end it), and with one leading slash, so that `//evil.example/x` (a scheme-relative
    URL to a browser) stays a path on this origin.
    """
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    path = "/" + _reencode(raw_path.decode("latin-1")).lstrip("/")
    query = scope.get("query_string", b"").decode("latin-1")
    kept = [p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) != drop_query]
    return path + ("?" + _reencode("&".join(kept)) if kept else "")


def _reencode(text: str) -> str:
    # Bytes that arrived as latin-1 characters go out as their own %XX, never as UTF-8 of the
    # character: the machine sees the path the browser asked for.
    escaped = _STRAY_PERCENT.sub("%25", text)
    return quote(escaped, safe=_SAFE, encoding="latin-1")


class RequestBody:
    """The browser's request body, read from ASGI `receive` while it is sent to the machine.

    `length` is the declared `Content-Length` (None: chunked, length unknown; 0: none).
    """

    def __init__(self, scope: Scope, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        declared = header(scope, b"content-length")
        chunked = header(scope, b"transfer-encoding") is not None
        # uvicorn has already refused a malformed or contradictory Content-Length.
        self.length: int | None = int(declared) if declared else (None if chunked else 0)

    @property
    def over_limit(self) -> bool:
        return self.length is not None and self.length > self._limit

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.length == 0:
            return
        received = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise BrowserGone
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > self._limit:
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body"):
                return
