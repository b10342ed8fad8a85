"""/api/admin/pool: operators read the pool, set its bounds (per tier) and guest size, and
remove a pool. Admins only (`app_metadata.role == "admin"` in the access token)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.auth import Principal
from app.errors import bad_request, forbidden, not_found
from app.openapi import Answer, ApiRoute, Operation
from app.pool_admin import (
    PoolAdminError,
    UnknownPool,
    bounds_target,
    check_configured,
    parse_bounds,
    remove_pool,
    store_bounds,
)
from app.routes.common import authenticate, resources
from app.schemas import (
    KnownPoolPath,
    PoolBoundsBody,
    PoolBoundsView,
    PoolPath,
    PoolRemovedView,
    PoolReportView,
    read_json,
)
from pool.services.pool_status import pool_report
from pool.services.targets import tier_bounds
from pool.store.inventory import PoolKey
from sql.pool_targets import list_targets


async def _require_admin(request: Request) -> Principal:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise forbidden("operators only")
    return principal


async def get_pool(request: Request) -> Response:
    await _require_admin(request)
    res = resources(request)
    async with res.db.connection() as conn:
        targets = await list_targets(conn)
    default_bounds = (res.settings.preview_pool_min, res.settings.preview_pool_max)
    report = await pool_report(
        res.inventory,
        targets={PoolKey(t.template, t.region): (t.min_size, t.max_size) for t in targets},
        default_bounds=default_bounds,
        defaults=[PoolKey(t, res.settings.preview_default_region) for t in res.settings.templates],
        tiers={PoolKey(t.template, t.region): tier_bounds(t, default_bounds) for t in targets},
    )
    return JSONResponse({"pools": report})


async def put_pool(request: Request) -> Response:
    principal = await _require_admin(request)
    res = resources(request)
    template, region = request.path_params["template"], request.path_params["region"]
    with _as_bad_request():
        check_configured(res.settings, template, region)
    raw = await read_json(request, res.settings.preview_max_body_bytes)
    with _as_bad_request():
        body = parse_bounds(raw)
        target = bounds_target(template, region, body)
    stored = (await store_bounds(res.db, res.inventory, res.jobs, target, principal.user_id)).target
    answer: dict[str, object] = {
        "template": template,
        "region": region,
        "min": stored.min_size,
        "max": stored.max_size,
    }
    # The lower tiers and the guest appear once set: a hot-only pool answers as it always did.
    if body.suspended is not None or stored.suspended_max:
        answer["suspended"] = {"min": stored.suspended_min, "max": stored.suspended_max}
    if body.stopped is not None or stored.stopped_max:
        answer["stopped"] = {"min": stored.stopped_min, "max": stored.stopped_max}
    if stored.guest_cpus is not None:
        answer["guest"] = {"cpus": stored.guest_cpus, "memoryMb": stored.guest_memory_mb}
    return JSONResponse(answer)


@contextlib.contextmanager
def _as_bad_request() -> Iterator[None]:
    try:
        yield
    except PoolAdminError as exc:
        raise bad_request(exc.message, exc.code) from None


async def delete_pool(request: Request) -> Response:
    """Remove a pool (app.pool_admin.remove_pool: the CLI's `pool delete` does the same)."""
    principal = await _require_admin(request)
    res = resources(request)
    template, region = request.path_params["template"], request.path_params["region"]
    try:
        await remove_pool(res.db, res.inventory, res.jobs, template, region, principal.user_id)
    except UnknownPool:
        raise not_found("pool") from None
    except PoolAdminError as exc:
        raise bad_request(exc.message, exc.code) from None
    return JSONResponse(
        {"template": template, "region": region, "min": 0, "max": 0, "removed": True},
        status_code=202,
    )


ROUTES = [
    ApiRoute(
        "/api/admin/pool",
        GET=Operation(
            get_pool,
            "Pool counts, bounds and hit ratio (admins)",
            {200: Answer("per (template, region)", PoolReportView)},
            errors=(403,),
        ),
    ),
    ApiRoute(
        "/api/admin/pool/{template}/{region}",
        PUT=Operation(
            put_pool,
            "Set the pool's bounds (admins)",
            {200: Answer("stored; a resize is queued", PoolBoundsView)},
            errors=(403,),
            path=PoolPath,
            body=PoolBoundsBody,
        ),
        DELETE=Operation(
            delete_pool,
            "Remove the pool: every bound becomes 0 and it drains (admins)",
            {202: Answer("bounds set to 0; a resize is queued", PoolRemovedView)},
            errors=(403, 404),
            path=KnownPoolPath,
        ),
    ),
]
