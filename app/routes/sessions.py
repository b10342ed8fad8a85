"""/api/preview/sessions: lease, read, list, heartbeat and end preview sessions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import leases
from app.errors import ApiError, bad_request, not_found
from app.routes.common import authenticate, by_method, resources, session_view
from app.schemas import CreateSessionBody, parse_body, parse_uuid, read_json
from pool import logs
from sql import sessions

_OWN_SESSION_ONLY = "session"  # another user's session is reported as not found, never 403


async def create_session(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    body = parse_body(
        CreateSessionBody, await read_json(request, res.settings.preview_max_body_bytes)
    )
    created = await leases.create_session(res, principal, body)
    view = session_view(res, created.session)
    return JSONResponse(
        view.model_dump(mode="json", by_alias=True), status_code=202 if created.booting else 201
    )


async def list_sessions(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    unknown = set(request.query_params) - {"projectId"}
    if unknown:
        raise bad_request(f"unknown query parameter {sorted(unknown)[0]!r}", "invalid_query")
    project = request.query_params.get("projectId")
    project_id = parse_uuid(project, "projectId") if project else None
    async with res.db.connection() as conn:
        rows = await sessions.list_sessions(conn, principal.user_id, project_id)
    return JSONResponse(
        {"sessions": [session_view(res, r).model_dump(mode="json", by_alias=True) for r in rows]}
    )


async def get_session(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    session_id = parse_uuid(request.path_params["session_id"])
    logs.session_id.set(str(session_id))
    async with res.db.connection() as conn:
        row = await sessions.get_session(conn, session_id, principal.user_id)
    if row is None:
        raise not_found(_OWN_SESSION_ONLY)
    return JSONResponse(session_view(res, row).model_dump(mode="json", by_alias=True))


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
    if row.container_id is not None and row.lease_epoch is not None:
        await res.broker.heartbeat(row.container_id, row.lease_epoch)
    return Response(status_code=204)


ROUTES = [
    Route(
        "/api/preview/sessions",
        by_method(POST=create_session, GET=list_sessions),
        methods=["POST", "GET"],
    ),
    Route(
        "/api/preview/sessions/{session_id}",
        by_method(GET=get_session, DELETE=delete_session),
        methods=["GET", "DELETE"],
    ),
    Route("/api/preview/sessions/{session_id}/heartbeat", heartbeat, methods=["POST"]),
]
