"""/api/admin/alerts: what the in-process alert evaluator (pool.services.alerts) holds firing,
and what resolved lately. Admins only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import forbidden
from app.openapi import Answer, ApiRoute, Operation
from app.routes.common import authenticate, resources
from pool.services.alerts import alerts_view
from pool.store.alert_store import AlertStore


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FiringAlertView(_View):
    name: str = Field(description="the rule (ops/prometheus/alerts.yml)")
    severity: str = Field(description="critical or warning")
    summary: str
    since: str = Field(description="when it fired (ISO-8601)")


class ResolvedAlertView(_View):
    name: str
    severity: str
    summary: str
    fired_at: str = Field(description="ISO-8601")
    resolved_at: str = Field(description="ISO-8601")


class AlertsView(_View):
    firing: list[FiringAlertView]
    recent: list[ResolvedAlertView] = Field(description="resolved alerts, newest first")


async def get_alerts(request: Request) -> Response:
    if not (await authenticate(request)).is_admin:
        raise forbidden("operators only")
    res = resources(request)
    view = AlertsView.model_validate(await alerts_view(AlertStore(res.redis, res.inventory.keys)))
    return JSONResponse(view.model_dump(by_alias=True))


ROUTES = [
    ApiRoute(
        "/api/admin/alerts",
        GET=Operation(
            get_alerts,
            "Alerts firing now and resolved lately (admins)",
            {200: Answer("the evaluator's state", AlertsView)},
            errors=(403,),
        ),
    ),
]
