"""Session timelines (sql.timelines): one session's stages and edit latencies, for operators
and for the session's owner; the operators' session search and stage statistics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import bad_request, forbidden, not_found
from app.openapi import Answer, ApiRoute, Operation
from app.routes.common import authenticate, resources
from app.schemas import UUID_TEXT, SessionPath, parse_query, parse_uuid
from app.timeline_schemas import (
    EditLatencyView,
    SessionSearchQuery,
    SessionSearchView,
    SessionSummaryView,
    StagePercentilesView,
    StageView,
    StatsGroupView,
    StatsQuery,
    StatsView,
    TimelineView,
    parse_since,
)
from pool.core import logs
from sql import timelines
from sql.timelines import Timeline


async def _require_admin(request: Request) -> None:
    if not (await authenticate(request)).is_admin:
        raise forbidden("operators only")


def _timeline_view(timeline: Timeline) -> TimelineView:
    ack, applied = timeline.edits.ack, timeline.edits.applied
    return TimelineView(
        session_id=timeline.session_id,
        user_id=timeline.user_id,
        project_id=timeline.project_id,
        template=timeline.template,
        region=timeline.region,
        lease_kind=timeline.lease_kind,
        status=timeline.status,
        end_reason=timeline.end_reason,
        stages=[
            StageView(
                stage=s.stage.value,
                at=s.at,
                since_requested_ms=s.since_requested_ms,
                detail=s.detail,
            )
            for s in timeline.stages
        ],
        edits=EditLatencyView(
            count=ack.count,
            ack_p50_ms=ack.quantile(0.5),
            ack_p95_ms=ack.quantile(0.95),
            ack_max_ms=ack.max_ms if ack.count else None,
            applied_p50_ms=applied.quantile(0.5),
            applied_p95_ms=applied.quantile(0.95),
            applied_max_ms=applied.max_ms if applied.count else None,
        ),
    )


async def _timeline(request: Request, owner: uuid.UUID | None) -> Response:
    session_id = parse_uuid(request.path_params["session_id"])
    logs.session_id.set(str(session_id))
    async with resources(request).db.connection() as conn:
        timeline = await timelines.read_timeline(conn, session_id, owner)
    if timeline is None:
        raise not_found("session")  # another user's session too: never 403
    return JSONResponse(_timeline_view(timeline).model_dump(mode="json", by_alias=True))


async def admin_timeline(request: Request) -> Response:
    await _require_admin(request)
    return await _timeline(request, None)


async def own_timeline(request: Request) -> Response:
    principal = await authenticate(request)
    return await _timeline(request, principal.user_id)


async def search_sessions(request: Request) -> Response:
    await _require_admin(request)
    query = parse_query(SessionSearchQuery, request)
    text = (query.q or "").strip()
    ids: uuid.UUID | None = None
    email: str | None = None
    if UUID_TEXT.fullmatch(text):
        ids = uuid.UUID(text)
    elif text:
        email = text  # anything else can only be an email; one nobody has finds nothing
    async with resources(request).db.connection() as conn:
        found = await timelines.search_sessions(conn, ids=ids, email=email, limit=query.limit)
    view = SessionSearchView(
        sessions=[
            SessionSummaryView(
                session_id=s.session_id,
                user_id=s.user_id,
                project_id=s.project_id,
                template=s.template,
                region=s.region,
                status=s.status,
                created_at=s.created_at,
            )
            for s in found
        ]
    )
    return JSONResponse(view.model_dump(mode="json", by_alias=True))


async def stats(request: Request) -> Response:
    await _require_admin(request)
    query = parse_query(StatsQuery, request)
    try:
        since = parse_since(query.since, datetime.now(UTC))
    except ValueError as exc:
        raise bad_request(str(exc), "invalid_query") from None
    async with resources(request).db.connection() as conn:
        groups = await timelines.stage_stats(conn, since)
    view = StatsView(
        since=since,
        groups=[
            StatsGroupView(
                template=g.template,
                region=g.region,
                lease_kind=g.lease_kind,
                sessions=g.sessions,
                stages={
                    stage.value: StagePercentilesView(
                        n=p.n, p50_ms=p.p50_ms, p95_ms=p.p95_ms, p99_ms=p.p99_ms
                    )
                    for stage, p in g.stages.items()
                },
            )
            for g in groups
        ],
    )
    return JSONResponse(view.model_dump(mode="json", by_alias=True))


ROUTES = [
    ApiRoute(
        "/api/admin/sessions",
        GET=Operation(
            search_sessions,
            "Find sessions by session, user or project id, or a user's email (admins)",
            {200: Answer("matching sessions, newest first", SessionSearchView)},
            errors=(403,),
            query=SessionSearchQuery,
        ),
    ),
    ApiRoute(
        "/api/admin/sessions/{session_id}/timeline",
        GET=Operation(
            admin_timeline,
            "A session's stages and edit latencies (admins)",
            {200: Answer("the timeline", TimelineView)},
            errors=(403, 404),
            path=SessionPath,
        ),
    ),
    ApiRoute(
        "/api/admin/stats",
        GET=Operation(
            stats,
            "p50/p95/p99 of each stage per template, region and lease kind (admins)",
            {200: Answer("per group, ms since `requested`", StatsView)},
            errors=(403,),
            query=StatsQuery,
        ),
    ),
    ApiRoute(
        "/api/preview/sessions/{session_id}/timeline",
        GET=Operation(
            own_timeline,
            "One of the caller's sessions: its stages and edit latencies",
            {200: Answer("the timeline", TimelineView)},
            errors=(404,),
            path=SessionPath,
        ),
    ),
]
