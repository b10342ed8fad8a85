"""GET /api/admin/rollout/report: the A/B report of the rollout (app/rollout/ab_report.py),
the new preview system against Appetize on the sessions since `since` (admins only)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import bad_request, forbidden
from app.openapi import Answer, ApiRoute, Operation
from app.rollout.ab_reader import read_report
from app.rollout.ab_schemas import ReportQuery, RolloutReportView, report_since, report_view
from app.routes.common import authenticate, resources
from app.schemas import parse_query


async def get_report(request: Request) -> Response:
    if not (await authenticate(request)).is_admin:
        raise forbidden("operators only")
    query = parse_query(ReportQuery, request)
    now = datetime.now(UTC)
    try:
        since = report_since(query.since, now)
    except ValueError as exc:
        raise bad_request(str(exc), "invalid_query") from None
    async with resources(request).db.connection() as conn:
        report = await read_report(conn, since, now)
    return JSONResponse(report_view(report).model_dump(mode="json", by_alias=True))


ROUTES = [
    ApiRoute(
        "/api/admin/rollout/report",
        GET=Operation(
            get_report,
            "The A/B report: the new system against Appetize per arm, with sample sizes, "
            "95 % CIs and significance (admins)",
            {200: Answer("the report (differences are new - Appetize)", RolloutReportView)},
            errors=(403,),
            query=ReportQuery,
        ),
    ),
]
