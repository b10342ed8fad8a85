"""Preview routing: one origin per session, routed by `Host`.

`{session}.preview.localhost[:port]` (development) or `{session}.{PREVIEW_DOMAIN}` (production)
is the user's app, served by the session's machine. A separate origin per session keeps the
user's code away from other previews' storage and from the API's origin.

Access needs a session token: `?token=` on the first load, which becomes an HttpOnly cookie
on that origin (then a redirect drops it from the URL). Another session's token → 403. The
cookie always holds a `preview`-scoped token (app.session_tokens): whatever the page's code
does, it never holds a credential for the editor socket.

The cookie is `SameSite=None; Secure; Partitioned`, because the editor embeds the preview in a
cross-site iframe (previews live on their own registrable domain): a Lax cookie is not sent
there, and an unpartitioned third-party cookie is refused where third-party cookies are
blocked. A partitioned (CHIPS) cookie is kept per top-level site, which is what an embed
wants. `Secure` is set on every answer, never derived from the request's scheme (behind a
proxy uvicorn does not trust, that is http even when the browser used https); Chromium counts
http://*.localhost as secure, so the same attributes work in dev.
`/__preview/token?token=` sets a fresh cookie without touching the page: the panel loads it
in a hidden iframe after refreshing its token, so module fetches and the HMR socket keep
working past the first token's expiry, and the app keeps its state.
`POST /__preview/render` is the page's report of its first render (app.preview_render).

Phones (Expo Go) keep no cookie, and fetch every URL of the Expo manifest (bundles, assets,
the HMR socket, /symbolicate, /logs) from the host the manifest names, which is the host the
manifest was asked on (the machine's front rewrites it). So a first load that presents
`?token=` with an `expo-platform: ios|android` header (Expo Go, opening the `exp://` link of a
QR code) is answered 307 to the session's device host, `{session}--{credential}.{domain}`, the
same path without the token: the credential (app.session_tokens) is in the host's first label,
stateless, and valid for PREVIEW_DEVICE_HOST_TTL_SECONDS while the session is active. Requests
on a device host need no cookie and no token; a bad, expired or other session's credential is
refused like a bad token (403). One label, so the wildcard DNS name and certificate of
PREVIEW_DOMAIN cover it. This relies on Expo Go's HTTP stacks (OkHttp, NSURLSession)
following a 307 and keeping its headers, their default (no phone runs in the tests).

With the local provider this process reverse-proxies HTTP and the dev server's HMR WebSocket to
the machine (what of the request goes there: app.preview_request). With Fly it answers with a
`fly-replay` header naming the machine, and Fly's proxy delivers the request to the machine
directly. Either way a WebSocket whose `Origin` is another site's is refused here (403).

Every module Vite serves is a request through here, so the session → machine lookup is cached
per process for a couple of seconds, and the request itself goes out through the lean client in
`app.preview_upstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

import websockets
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.preview_render import RENDER_PATH, record_first_render
from app.preview_request import (
    BodyTooLarge,
    BrowserGone,
    RequestBody,
    cookie_pairs,
    header,
    redirect_target,
    same_origin,
    upstream_headers,
)
from app.preview_upstream import UpstreamError, relay
from app.resources import Resources
from app.session_tokens import (
    Grant,
    InvalidSessionToken,
    TokenScope,
    mint_device_credential,
    mint_session_token,
    verify_device_credential,
    verify_session_token,
)
from sql import sessions
from sql.states import SessionStatus

log = logging.getLogger(__name__)

COOKIE = "preview_token"
# On every preview origin: sets a fresh cookie from ?token= (the panel's token refresh).
TOKEN_PATH = "/__preview/token"
_EXCHANGE_SCOPES = frozenset({TokenScope.EDITOR, TokenScope.PREVIEW, TokenScope.SHARE})
_COOKIE_SCOPES = frozenset({TokenScope.EDITOR, TokenScope.PREVIEW})
CACHE_SECONDS = 2.0
# A live session whose machine Redis has no record of (Redis lost it; reconcile rebuilds it
# within seconds): requests wait this long for the record rather than fail at once, so that
# the page's module fetches of an HMR update, which Vite never retries, still succeed.
RECOVER_SECONDS = 10.0
RECOVER_POLL_SECONDS = 0.5
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What Expo Go sends with every manifest request; a browser never does.
_EXPO_GO_PLATFORMS = frozenset({"ios", "android"})
_REFUSED = "a valid preview token is required"


def preview_host_pattern(domain: str | None) -> re.Pattern[str]:
    """A session's host, `{session}.{suffix}`, or its device host, `{session}--{credential}.
    {suffix}`. Whatever follows `--` counts as a credential and is checked, so a malformed one
    is refused, not handed to the API."""
    suffix = re.escape(domain) if domain else r"preview\.localhost"
    return re.compile(rf"^(?P<session>{_UUID})(?:--(?P<credential>[^.]*))?\.{suffix}(?::\d+)?$")


def device_host(host: str, credential: str) -> str:
    """The device host of a session's `host` (`{session}.{domain}[:port]`, as matched)."""
    session, _, rest = host.partition(".")
    return f"{session}--{credential}.{rest}"


class PreviewRouter:
    """ASGI middleware in front of the API: preview hosts go to the machine, the rest to `app`."""

    def __init__(self, app: ASGIApp, *, domain: str | None) -> None:
        self.app = app
        self.pattern = preview_host_pattern(domain)
        self._machines: dict[uuid.UUID, tuple[float, str | None, str | None]] = {}
        self._recovering: dict[uuid.UUID, asyncio.Future[tuple[str | None, str | None]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
        match = self.pattern.match(host)
        if match is None:
            await self.app(scope, receive, send)
            return
        # Starlette puts itself in the scope before its middleware stack runs.
        res: Resources = scope["app"].state.resources
        session_id = uuid.UUID(match["session"])
        if match["credential"] is None:
            await self._serve(res, session_id, scope, receive, send)
            return
        try:
            verify_device_credential(res.token_secret, match["credential"], session_id, time.time())
        except InvalidSessionToken:
            await _refuse(scope, send, 403, _REFUSED)
            return
        await self._forward(res, session_id, scope, receive, send)

    async def _serve(
        self, res: Resources, session_id: uuid.UUID, scope: Scope, receive: Receive, send: Send
    ) -> None:
        query_token: str | None = None
        if scope["type"] == "websocket":
            # A socket's `?token=` is the dev server's own (Vite's HMR client sends one): the
            # page's sockets authenticate with the cookie of the first load, and the query
            # goes to the machine unchanged.
            token = _cookie(scope)
        else:
            query = scope.get("query_string", b"").decode("latin-1")
            query_token = dict(parse_qsl(query)).get("token")
            token = query_token or _cookie(scope)
        scopes = _EXCHANGE_SCOPES if query_token is not None else _COOKIE_SCOPES
        try:
            grant = verify_session_token(
                res.token_secret, token or "", session_id, time.time(), scopes
            )
        except InvalidSessionToken:
            await _refuse(scope, send, 403 if token else 401, _REFUSED)
            return
        if query_token is not None:
            if scope["path"] == TOKEN_PATH:
                await _set_cookie(send, _cookie_token(res, session_id, grant))
            elif header(scope, b"expo-platform") in _EXPO_GO_PLATFORMS:
                await _redirect_to_device_host(res, session_id, scope, send)
            else:
                await _redirect_with_cookie(scope, send, _cookie_token(res, session_id, grant))
            return
        if scope["path"] == TOKEN_PATH:
            await _refuse(scope, send, 400, f"{TOKEN_PATH} takes ?token=")
            return
        await self._forward(res, session_id, scope, receive, send)

    async def _forward(
        self, res: Resources, session_id: uuid.UUID, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """An authorised request (cookie, or device host) to the session's machine."""
        if scope["type"] == "http" and scope["path"] == RENDER_PATH:
            # The page's report of its first render: answered here, never by the machine.
            await record_first_render(res, session_id, scope, receive, send)
            return
        if scope["type"] == "websocket" and not same_origin(scope):
            # Another site's page holding the cookie (a top-level preview's partition) must not
            # open the dev server's socket: Vite's own check only sees what we forward.
            log.info("preview socket refused: Origin %r is not the preview's own", _origin(scope))
            await _refuse(scope, send, 403, "the socket's Origin is not this preview's")
            return
        fly = res.settings.preview_provider == "fly"
        machine_id, address = await self._lookup(res, session_id)
        if machine_id is not None and address is None and not fly:
            machine_id, address = await self._wait_for_record(res, session_id)
        if machine_id is None or (address is None and not fly):
            await _refuse(scope, send, 503, "the preview machine is not ready yet")
            return
        if fly:
            await _replay(scope, send, res.settings.fly_preview_app or "", machine_id)
        elif scope["type"] == "websocket":
            assert address is not None
            await _proxy_websocket(scope, receive, send, address)
        else:
            assert address is not None
            limit = res.settings.preview_proxy_max_body_bytes
            await _proxy_http(scope, receive, send, address, limit)

    async def _wait_for_record(
        self, res: Resources, session_id: uuid.UUID
    ) -> tuple[str | None, str | None]:
        """The session is live but Redis has no record of its machine: wait (bounded) for
        reconcile to rebuild it. Every request of the session waits on one poll, logged once
        (a page load is dozens of requests)."""
        waiting = self._recovering.get(session_id)
        if waiting is None:
            log.warning("session %s: its machine has no Redis record; waiting for it", session_id)
            waiting = asyncio.ensure_future(self._poll_for_record(res, session_id))
            self._recovering[session_id] = waiting
            waiting.add_done_callback(lambda _: self._recovering.pop(session_id, None))
        # shield: a request whose client left must not cancel the others' wait.
        return await asyncio.shield(waiting)

    async def _poll_for_record(
        self, res: Resources, session_id: uuid.UUID
    ) -> tuple[str | None, str | None]:
        deadline = time.monotonic() + RECOVER_SECONDS
        machine_id: str | None = None
        address: str | None = None
        while time.monotonic() < deadline:
            await asyncio.sleep(RECOVER_POLL_SECONDS)
            self._machines.pop(session_id, None)
            machine_id, address = await self._lookup(res, session_id)
            if machine_id is None or address is not None:
                break
        return machine_id, address

    async def _lookup(self, res: Resources, session_id: uuid.UUID) -> tuple[str | None, str | None]:
        cached = self._machines.get(session_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        async with res.db.connection() as conn:
            row = await sessions.get_session(conn, session_id)
        active = row is not None and row.status is SessionStatus.ACTIVE
        machine_id = row.machine_id if active and row is not None else None
        record = await res.inventory.machine(machine_id) if machine_id else None
        address = record.address if record is not None else None
        if machine_id is not None and address is None:
            return machine_id, None  # not cached: the record may be rebuilt any moment
        self._machines[session_id] = (now + CACHE_SECONDS, machine_id, address)
        if len(self._machines) > 10_000:
            self._machines.clear()
        return machine_id, address


def _cookie(scope: Scope) -> str | None:
    found = None
    for name, value in scope["headers"]:
        if name == b"cookie":
            for key, item in cookie_pairs(value):
                if key == COOKIE:
                    found = item
    return found


def _origin(scope: Scope) -> str:
    return (header(scope, b"origin") or "")[:200]


async def _proxy_http(
    scope: Scope, receive: Receive, send: Send, address: str, max_body: int
) -> None:
    body = RequestBody(scope, receive, max_body)
    too_large = f"the request body is over the preview's limit of {max_body} bytes"
    if body.over_limit:
        log.info("preview request refused: Content-Length %s over %d", body.length, max_body)
        await _refuse(scope, send, 413, too_large)
        return
    target = scope.get("raw_path") or scope["path"].encode()
    if query := scope.get("query_string", b""):
        target += b"?" + query
    headers = upstream_headers(scope, COOKIE)
    # The machine gets the Host the client asked for, as on Fly (whose replay keeps it):
    # Expo's manifest names it, and a phone fetches everything else from there.
    host = header(scope, b"host")
    try:
        await relay(address, scope["method"], target.decode("latin-1"), headers, body, send, host)
    except UpstreamError:
        await _refuse(scope, send, 502, "the preview machine did not answer")
    except BodyTooLarge:
        log.info("preview request refused: chunked body over %d bytes", max_body)
        await _refuse(scope, send, 413, too_large)
    except BrowserGone:
        pass  # nobody is left to answer


async def _proxy_websocket(scope: Scope, receive: Receive, send: Send, address: str) -> None:
    """Bridge the browser's socket (Vite's HMR client) to the machine's dev server."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    # To the machine's address, with the client's Host (as _proxy_http).
    machine = urlsplit(address)
    host = header(scope, b"host") or machine.netloc
    url = f"ws://{host}{path}" + (f"?{query}" if query else "")
    protocols = list(scope.get("subprotocols", []))
    # `Origin` among them: Vite checks it (with its HMR token) only when there is one.
    headers = [
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream_headers(scope, COOKIE)
    ]
    try:
        upstream = await websockets.connect(
            url,
            host=machine.hostname,
            port=machine.port,
            subprotocols=protocols or None,
            additional_headers=headers,
            user_agent_header=None,
            open_timeout=5,
            max_size=2**22,
        )
    except (OSError, websockets.WebSocketException, TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def browser_to_machine() -> None:
        while True:
            incoming: Message = await receive()
            if incoming["type"] == "websocket.disconnect":
                return
            data = incoming.get("text")
            await upstream.send(data if data is not None else incoming.get("bytes") or b"")

    async def machine_to_browser() -> None:
        async for data in upstream:
            key = "text" if isinstance(data, str) else "bytes"
            await send({"type": "websocket.send", key: data})

    tasks = [
        asyncio.ensure_future(browser_to_machine()),
        asyncio.ensure_future(machine_to_browser()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


async def _replay(scope: Scope, send: Send, app: str, machine_id: str) -> None:
    # The machines live in their own app (no public IPs): name it, or Fly's proxy would look
    # for the instance in the orchestrator's app.
    replay = f"app={app};instance={machine_id}"
    headers = [(b"fly-replay", replay.encode()), (b"content-length", b"0")]
    await _respond(scope, send, 307, headers, b"")


def _cookie_token(res: Resources, session_id: uuid.UUID, grant: Grant) -> str:
    """The cookie's token: preview scope only. A share link's token is short-lived by design
    (it is shown as a QR code); the device that used it gets an ordinary token lifetime."""
    expires = grant.expires_at
    if grant.scope is TokenScope.SHARE:
        expires = int(time.time()) + res.settings.preview_session_token_ttl_seconds
    return mint_session_token(res.token_secret, session_id, expires, TokenScope.PREVIEW)


async def _redirect_to_device_host(
    res: Resources, session_id: uuid.UUID, scope: Scope, send: Send
) -> None:
    """Expo Go's first load: the same request on the session's device host, without `?token=`
    and without a cookie (it would keep none). Same port as asked; the scheme is the
    previews' own (behind Fly's proxy the request's scheme is unknown here)."""
    expires = int(time.time()) + res.settings.preview_device_host_ttl_seconds
    credential = mint_device_credential(res.token_secret, session_id, expires)
    host = device_host(header(scope, b"host") or "", credential).lower()
    location = f"{res.settings.preview_scheme}://{host}{redirect_target(scope, 'token')}"
    headers = [
        (b"location", location.encode("ascii")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    await _respond(scope, send, 307, headers, b"")


def _set_cookie_header(token: str) -> tuple[bytes, bytes]:
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=None; Secure; Partitioned"
    return (b"set-cookie", cookie.encode("latin-1"))


async def _redirect_with_cookie(scope: Scope, send: Send, token: str) -> None:
    # The same request without `?token=`, on this origin (app.preview_request.redirect_target).
    location = redirect_target(scope, "token")
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", location.encode("ascii")),
                _set_cookie_header(token),
                (b"content-length", b"0"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _set_cookie(send: Send, token: str) -> None:
    """The answer of /__preview/token: a page (the panel loads it in a hidden iframe and waits
    for its load event) that sets the fresh cookie."""
    body = b"<!doctype html><title>preview token</title>"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                _set_cookie_header(token),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    body = f"{status}: {message}\n".encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await _respond(scope, send, status, headers, body)


async def _respond(
    scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        # The denial-response extension: a plain HTTP answer to the upgrade request.
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
