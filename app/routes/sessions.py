"""/api/preview/sessions: lease, read, list, heartbeat, refresh the token of, share and end
preview sessions; /api/preview/devices: the device catalogue."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app import expo_go, leases
from app.devices import catalogue
from app.errors import ApiError, not_found
from app.openapi import Answer, ApiRoute, Operation
from app.routes.common import (
    authenticate,
    preview_origin,
    resources,
    session_view,
    token_expiry,
)
from app.schemas import (
    CreatedSessionView,
    CreateSessionBody,
    DeviceCatalogueView,
    ListSessionsQuery,
    RestoredView,
    SessionListView,
    SessionPath,
    SessionView,
    ShareView,
    TokenView,
    parse_body,
    parse_query,
    parse_uuid,
    read_json,
)
from app.session_tokens import TokenScope, mint_session_token
from pool.core import logs
from pool.store.leasing import Heartbeat
from sql import sessions
from sql.sessions import SessionRow

_OWN_SESSION_ONLY = "session"  # another user's session is reported as not found, never 403


async def create_session(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    body = parse_body(
        CreateSessionBody, await read_json(request, res.settings.preview_max_body_bytes)
    )
    created = await leases.create_session(res, principal, body, client_gone=request.is_disconnected)
    view = CreatedSessionView(
        **session_view(res, created.session).model_dump(),
        restored=_restored_view(created.restored),
    )
    return JSONResponse(
        view.model_dump(mode="json", by_alias=True), status_code=202 if created.booting else 201
    )


def _restored_view(restored: leases.Restored | None) -> RestoredView | None:
    if restored is None:
        return None
    return RestoredView(
        from_session=restored.files.session_id,
        ended_at=restored.files.ended_at,
        seq=restored.seq,
        hydrated=restored.hydrated,
    )


async def list_sessions(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    query = parse_query(ListSessionsQuery, request)
    async with res.db.connection() as conn:
        rows = await sessions.list_sessions(conn, principal.user_id, query.project_id)
    return JSONResponse(
        {"sessions": [session_view(res, r).model_dump(mode="json", by_alias=True) for r in rows]}
    )


async def _own_session(request: Request) -> SessionRow:
    """The caller's own session named in the path (another user's is not found)."""
    principal = await authenticate(request)
    session_id = parse_uuid(request.path_params["session_id"])
    logs.session_id.set(str(session_id))
    async with resources(request).db.connection() as conn:
        row = await sessions.get_session(conn, session_id, principal.user_id)
    if row is None:
        raise not_found(_OWN_SESSION_ONLY)
    return row


async def get_session(request: Request) -> Response:
    row = await _own_session(request)
    return JSONResponse(
        session_view(resources(request), row).model_dump(mode="json", by_alias=True)
    )


async def delete_session(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    session_id = parse_uuid(request.path_params["session_id"])
    logs.session_id.set(str(session_id))
    if not await leases.end_session(res, session_id, principal.user_id):
        async with res.db.connection() as conn:
            row = await sessions.get_session(conn, session_id, principal.user_id)
        # Deleting one's own ended session again is a no-op; anything else is not found.
        if row is None:
            raise not_found(_OWN_SESSION_ONLY)
    return Response(status_code=204)


async def heartbeat(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    session_id = parse_uuid(request.path_params["session_id"])
    async with res.db.connection() as conn:
        row = await sessions.get_session(conn, session_id, principal.user_id)
        if row is None:
            raise not_found(_OWN_SESSION_ONLY)
        if not await sessions.touch_session(conn, session_id, principal.user_id):
            raise ApiError(409, "session_ended", f"the session is {row.status}")
    if row.machine_id is not None and row.lease_epoch is not None:
        beat = await res.broker.heartbeat(row.machine_id, row.lease_epoch)
        if beat is Heartbeat.STALE:
            # The machine changed hands: this session cannot get it back; its end (announced
            # by whoever took it, or by reconcile) follows.
            raise ApiError(409, "lease_lost", "the session no longer holds its machine")
        if beat is Heartbeat.UNKNOWN:
            # Redis lost the machine's record: reconcile rebuilds it from the provider and the
            # ledger, or ends the session with `machine_lost`. Not an end yet: ask again.
            raise ApiError(
                503,
                "lease_unknown",
                "the session's machine is being recovered; try again",
                headers={"Retry-After": "5"},
            )
    return Response(status_code=204)


async def _live_session(request: Request) -> SessionRow:
    """The caller's own session named in the path, while it is live (409 once it ended)."""
    row = await _own_session(request)
    if not row.status.is_live:
        raise ApiError(409, "session_ended", f"the session is {row.status}")
    return row


async def refresh_token(request: Request) -> Response:
    """A fresh session token, so an editor outlives its first token without a reload: it
    reconnects its socket with it and hands it to the preview origin (/__preview/token)."""
    row = await _live_session(request)
    res = resources(request)
    expires = token_expiry(res, row, res.settings.preview_session_token_ttl_seconds)
    view = TokenView(
        token=mint_session_token(res.token_secret, row.id, expires),
        token_expires_at=datetime.fromtimestamp(expires, UTC),
    )
    return JSONResponse(view.model_dump(mode="json", by_alias=True))


async def share_session(request: Request) -> Response:
    """A short-lived link that opens the preview on another device (a QR code to a phone, a
    new tab). Its token grants the preview origin only, never the editor socket. An `expo`
    session's link also comes as Expo Go opens it, and as an Appetize embed launching it."""
    row = await _live_session(request)
    res = resources(request)
    expires = token_expiry(res, row, res.settings.preview_share_ttl_seconds)
    token = mint_session_token(res.token_secret, row.id, expires, TokenScope.SHARE)
    url = f"{preview_origin(res, row.id)}/?token={token}"
    expo_url = expo_go.expo_go_url(url) if row.template == expo_go.EXPO_TEMPLATE else None
    view = ShareView(
        url=url,
        expires_at=datetime.fromtimestamp(expires, UTC),
        expo_go_url=expo_url,
        appetize_url=expo_go.appetize_url(res.settings, row.device_type, expo_url)
        if expo_url
        else None,
    )
    return JSONResponse(view.model_dump(mode="json", by_alias=True))


async def list_devices(request: Request) -> Response:
    """The device catalogue; public (it says nothing about anyone) and cacheable."""
    return JSONResponse({"devices": catalogue()}, headers={"Cache-Control": "public, max-age=300"})


_SESSION = Answer("the session", SessionView)
_OWN = (404,)  # another user's session is not found
_LIVE_ONLY = (404, 409)

ROUTES = [
    ApiRoute(
        "/api/preview/sessions",
        POST=Operation(
            create_session,
            "Lease a preview machine for a new session",
            {
                201: Answer("leased from the warm pool", CreatedSessionView),
                202: Answer("booting: on demand, or waking a stopped machine", CreatedSessionView),
            },
            errors=(403, 429, 503),
            body=CreateSessionBody,
        ),
        GET=Operation(
            list_sessions,
            "List the caller's sessions",
            {200: Answer("the caller's sessions, newest first", SessionListView)},
            query=ListSessionsQuery,
        ),
    ),
    ApiRoute(
        "/api/preview/sessions/{session_id}",
        GET=Operation(
            get_session, "Read one of the caller's sessions", {200: _SESSION}, _OWN, SessionPath
        ),
        DELETE=Operation(
            delete_session,
            "End the session and release its machine",
            {204: Answer("ended")},
            _OWN,
            SessionPath,
        ),
    ),
    ApiRoute(
        "/api/preview/sessions/{session_id}/heartbeat",
        POST=Operation(
            heartbeat,
            "Keep the session from idling out",
            {204: Answer("recorded")},
            (*_LIVE_ONLY, 503),
            SessionPath,
        ),
    ),
    ApiRoute(
        "/api/preview/sessions/{session_id}/token",
        POST=Operation(
            refresh_token,
            "A fresh session token (the editor refreshes before expiry)",
            {200: Answer("the new token", TokenView)},
            _LIVE_ONLY,
            SessionPath,
        ),
    ),
    ApiRoute(
        "/api/preview/sessions/{session_id}/share",
        POST=Operation(
            share_session,
            "A short-lived link that opens the preview only (QR code)",
            {200: Answer("the link", ShareView)},
            _LIVE_ONLY,
            SessionPath,
        ),
    ),
    ApiRoute(
        "/api/preview/devices",
        GET=Operation(
            list_devices,
            "The device catalogue",
            {200: Answer("phones, tablets and desktops", DeviceCatalogueView)},
            public=True,
        ),
    ),
]
