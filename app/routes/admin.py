"""/api/admin/pool: operators read the pool and set its bounds. Admins only
(`app_metadata.role == "admin"` in the access token)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.auth import Principal
from app.errors import bad_request, forbidden
from app.routes.common import authenticate, resources
from app.schemas import NAME_PATTERN, PoolBoundsBody, parse_body, read_json
from pool.inventory import PoolKey
from pool.pool_status import pool_report
from sql.pool_targets import PoolTarget, list_targets, set_target


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
    report = await pool_report(
        res.inventory,
        targets={PoolKey(t.template, t.region): (t.min_size, t.max_size) for t in targets},
        default_bounds=(res.settings.preview_pool_min, res.settings.preview_pool_max),
        defaults=[PoolKey(t, res.settings.preview_default_region) for t in res.settings.templates],
    )
    return JSONResponse({"pools": report})


async def put_pool(request: Request) -> Response:
    principal = await _require_admin(request)
    res = resources(request)
    template, region = request.path_params["template"], request.path_params["region"]
    # fullmatch: with re.match, "$" also matches before a trailing newline ("local\n").
    if not re.fullmatch(NAME_PATTERN, template) or not re.fullmatch(NAME_PATTERN, region):
        raise bad_request("template and region are lowercase names", "invalid_pool")
    if template not in res.settings.templates:
        raise bad_request(f"unknown template {template!r}", "unknown_template")
    body = parse_body(PoolBoundsBody, await read_json(request, res.settings.preview_max_body_bytes))
    if body.min > body.max:
        raise bad_request("min must not exceed max", "invalid_body")
    async with res.db.connection() as conn:
        await set_target(conn, PoolTarget(template, region, body.min, body.max), principal.user_id)
    await res.inventory.add_pool(PoolKey(template, region))
    await res.jobs.resize(template, region)
    return JSONResponse({"template": template, "region": region, "min": body.min, "max": body.max})


ROUTES = [
    Route("/api/admin/pool", get_pool, methods=["GET"]),
    Route("/api/admin/pool/{template}/{region}", put_pool, methods=["PUT"]),
]
