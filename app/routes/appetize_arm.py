"""/api/preview/appetize-sessions: the Appetize arm as the panel reports it. The panel opens a
session when it shows the Appetize embed (a flag, the percentage, the kill switch, or a
fallback sent it there) and reports the stages it sees, so the A/B report compares both arms
on the same moments. Only the session's owner reports; everything is bounded (body size,
strings, numbers, stages per session, times within the session's life)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import ApiError, bad_request, not_found
from app.openapi import Answer, ApiRoute, Operation
from app.rollout.appetize_embed import embed_url
from app.rollout.arm_schemas import (
    ArmEventBody,
    ArmEventView,
    ArmSessionBody,
    ArmSessionPath,
    ArmSessionView,
)
from app.routes.common import authenticate, resources
from app.schemas import parse_body, parse_uuid, read_json
from sql.appetize import appetize_settings
from sql.appetize_arm import Reported, create_arm_session, record_arm_event
from sql.flags import load_backend_context

# A report is a stage, a time and a short detail: far below the API's general cap.
MAX_REPORT_BYTES = 4096


async def create_arm(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    body = parse_body(ArmSessionBody, await read_json(request, MAX_REPORT_BYTES))
    async with res.db.connection() as conn:
        context = await load_backend_context(
            conn, principal.user_id, body.project_id, res.settings.preview_fallback_window_seconds
        )
        if not context.can_access_project:
            raise not_found("project")  # another user's project, as one that does not exist
        settings = await appetize_settings(conn, body.project_id)
        if settings is None:
            raise ApiError(404, "no_appetize_build", "the project has no Appetize build to show")
        arm = await create_arm_session(
            conn, project_id=body.project_id, user_id=principal.user_id, reason=body.reason
        )
    view = ArmSessionView(
        id=arm.id,
        appetize=settings.as_json(),
        embed_url=embed_url(res.settings.preview_appetize_embed_url, settings),
    )
    return JSONResponse(view.model_dump(mode="json", by_alias=True), status_code=201)


_REFUSED = {
    Reported.NOT_FOUND: not_found("session"),  # another user's session, as one that is not
    Reported.ENDED: ApiError(409, "session_ended", "the Appetize session has ended"),
    Reported.OUT_OF_RANGE: bad_request(
        "`at` is outside the session's life (or too far from the server's clock)",
        "at_out_of_range",
    ),
    Reported.FULL: ApiError(409, "too_many_events", "the session has all the stages it keeps"),
}


async def report_stage(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    session_id = parse_uuid(request.path_params["session_id"])
    body = parse_body(ArmEventBody, await read_json(request, MAX_REPORT_BYTES))
    async with res.db.connection() as conn:
        outcome = await record_arm_event(
            conn,
            session_id=session_id,
            user_id=principal.user_id,
            stage=body.stage,
            at=body.at,
            detail=body.detail_json(),
        )
    refused = _REFUSED.get(outcome)
    if refused is not None:
        raise ApiError(refused.status, refused.code, refused.message)
    recorded = outcome is Reported.RECORDED
    view = ArmEventView(stage=body.stage, recorded=recorded)
    return JSONResponse(view.model_dump(by_alias=True), status_code=201 if recorded else 200)


ROUTES = [
    ApiRoute(
        "/api/preview/appetize-sessions",
        POST=Operation(
            create_arm,
            "Open an Appetize-arm session: the panel shows the project's Appetize embed",
            {201: Answer("the session, the Appetize settings and the embed URL", ArmSessionView)},
            errors=(404,),
            body=ArmSessionBody,
        ),
    ),
    ApiRoute(
        "/api/preview/appetize-sessions/{session_id}/events",
        POST=Operation(
            report_stage,
            "Report a stage of an Appetize-arm session (the owner's; a stage other than error "
            "and edit_visible once)",
            {
                201: Answer("recorded", ArmEventView),
                200: Answer("already reported: the first report stands", ArmEventView),
            },
            errors=(404, 409),
            path=ArmSessionPath,
            body=ArmEventBody,
        ),
    ),
]
