"""GET /api/preview/backend: which preview system this editor uses, and why. /api/admin/flags:
operators read and change the rollout flags and read their audit (admins only)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.auth import Principal
from app.errors import ApiError, forbidden, not_found
from app.openapi import Answer, ApiRoute, Operation
from app.resources import Resources
from app.rollout.decision import Backend, Editor, decide_backend, platform_runs_here
from app.rollout.flag_admin import (
    FlagAdmin,
    FlagAdminError,
    change_json,
    override_json,
    parse_choice,
    parse_rollout,
    parse_subject,
    rollout_json,
)
from app.rollout.flag_schemas import (
    AuditQuery,
    AuditView,
    BackendQuery,
    BackendView,
    FlagsView,
    OverrideBody,
    OverrideChangedView,
    PlanFlagPath,
    ProjectFlagPath,
    RolloutBody,
    RolloutChangedView,
    UserFlagPath,
)
from app.routes.common import authenticate, resources
from app.schemas import parse_query, read_json
from pool.store.keys import DEFAULT_PREFIX, Keys
from sql.appetize import appetize_settings
from sql.flags import Actor, Scope, load_backend_context


def new_backend(res: Resources) -> Backend:
    """What the new system is called in this deployment's answers."""
    return Backend.FLY if res.settings.preview_provider == "fly" else Backend.LOCAL


async def get_backend(request: Request) -> Response:
    principal = await authenticate(request)
    res = resources(request)
    query = parse_query(BackendQuery, request)
    flags = await res.flags.get()
    async with res.db.connection() as conn:
        context = await load_backend_context(
            conn,
            principal.user_id,
            query.project_id,
            res.settings.preview_fallback_window_seconds,
        )
        if not context.can_access_project:
            raise not_found("project")  # another user's project, as one that does not exist
        editor = Editor(
            user_id=principal.user_id,
            project_id=query.project_id,
            plan=context.plan,
            runs_here=platform_runs_here(
                context.template, context.device_type, res.settings.templates
            ),
            recent_fallback=context.fallback_reason,
        )
        decision = decide_backend(flags, editor, new_backend(res))
        appetize = None
        if decision.backend is Backend.APPETIZE:
            found = await appetize_settings(conn, query.project_id)
            appetize = None if found is None else found.as_json()
    return JSONResponse(
        {
            "backend": decision.backend.value,
            "reason": decision.reason.value,
            "detail": decision.detail,
            "appetize": appetize,
        }
    )


async def _admin(request: Request) -> tuple[Principal, FlagAdmin]:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise forbidden("operators only")
    res = resources(request)
    return principal, FlagAdmin(res.db, res.redis, Keys(DEFAULT_PREFIX).flags_channel)


def _actor(principal: Principal) -> Actor:
    return Actor(principal.user_id, principal.email or str(principal.user_id))


@contextlib.contextmanager
def _as_api_error() -> Iterator[None]:
    try:
        yield
    except FlagAdminError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


async def get_flags(request: Request) -> Response:
    _, admin = await _admin(request)
    stored = await admin.flags()
    return JSONResponse(
        {
            "rollout": rollout_json(stored.rollout),
            "overrides": [override_json(o) for o in stored.overrides],
            "cacheSeconds": resources(request).flags.ttl,
        }
    )


async def put_rollout(request: Request) -> Response:
    principal, admin = await _admin(request)
    raw = await read_json(request, resources(request).settings.preview_max_body_bytes)
    with _as_api_error():
        change = parse_rollout(raw)
    stored, changes = await admin.set_rollout(_actor(principal), change)
    if changes:
        resources(request).flags.invalidate()  # this process at once, not when pub/sub echoes
    return JSONResponse({**rollout_json(stored), "changes": [change_json(c) for c in changes]})


async def get_audit(request: Request) -> Response:
    _, admin = await _admin(request)
    query = parse_query(AuditQuery, request)
    changes = await admin.changes(
        limit=query.limit, before=query.before_id or None, flag=query.flag
    )
    return JSONResponse({"changes": [change_json(c) for c in changes]})


Handler = Callable[[Request], Awaitable[Response]]


def _override_handlers(scope: Scope, param: str) -> tuple[Handler, Handler]:
    """PUT and DELETE of one scope's override; `param` names the subject in the path."""

    async def put(request: Request) -> Response:
        principal, admin = await _admin(request)
        with _as_api_error():
            subject = parse_subject(scope, request.path_params[param])
        raw = await read_json(request, resources(request).settings.preview_max_body_bytes)
        with _as_api_error():
            choice = parse_choice(raw)
            change = await admin.set_override(_actor(principal), scope, subject, choice)
        if change is not None:
            resources(request).flags.invalidate()
        return JSONResponse(
            {
                "scope": scope.value,
                "subject": str(subject),
                "backend": choice.value,
                "changes": [] if change is None else [change_json(change)],
            }
        )

    async def delete(request: Request) -> Response:
        principal, admin = await _admin(request)
        with _as_api_error():
            subject = parse_subject(scope, request.path_params[param])
            await admin.set_override(_actor(principal), scope, subject, None)
        resources(request).flags.invalidate()
        return Response(status_code=204)

    return put, delete


def _override_route(scope: Scope, path: str, param: str, model: type[BaseModel]) -> ApiRoute:
    put, delete = _override_handlers(scope, param)
    return ApiRoute(
        path,
        PUT=Operation(
            put,
            f"Put the {scope.value}'s override (admins; audited)",
            {200: Answer("stored (changes: what was recorded)", OverrideChangedView)},
            errors=(403, 404),
            path=model,
            body=OverrideBody,
        ),
        DELETE=Operation(
            delete,
            f"Remove the {scope.value}'s override (admins; audited)",
            {204: Answer("removed")},
            errors=(403, 404),
            path=model,
        ),
    )


ROUTES = [
    ApiRoute(
        "/api/preview/backend",
        GET=Operation(
            get_backend,
            "Which preview system this editor uses for the project, and why",
            {200: Answer("the backend and the reason", BackendView)},
            errors=(404,),
            query=BackendQuery,
        ),
    ),
    ApiRoute(
        "/api/admin/flags",
        GET=Operation(
            get_flags,
            "The rollout flags and every override (admins)",
            {200: Answer("the flags", FlagsView)},
            errors=(403,),
        ),
    ),
    ApiRoute(
        "/api/admin/flags/global",
        PUT=Operation(
            put_rollout,
            "Set the kill switch and/or the rollout percentage (admins; audited)",
            {200: Answer("stored (changes: what was recorded)", RolloutChangedView)},
            errors=(403,),
            body=RolloutBody,
        ),
    ),
    ApiRoute(
        "/api/admin/flags/audit",
        GET=Operation(
            get_audit,
            "Every change of a flag, newest first: who, when, old and new value (admins)",
            {200: Answer("a page of changes", AuditView)},
            errors=(403,),
            query=AuditQuery,
        ),
    ),
    _override_route(Scope.USER, "/api/admin/flags/users/{user}", "user", UserFlagPath),
    _override_route(
        Scope.PROJECT, "/api/admin/flags/projects/{project}", "project", ProjectFlagPath
    ),
    _override_route(Scope.PLAN, "/api/admin/flags/plans/{plan}", "plan", PlanFlagPath),
]
