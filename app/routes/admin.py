"""/api/admin/pool: operators read the pool, set its bounds (per tier) and guest size, and
remove a pool. Admins only (`app_metadata.role == "admin"` in the access token)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.auth import Principal
from app.errors import bad_request, forbidden, not_found
from app.routes.common import authenticate, resources
from app.schemas import NAME_PATTERN, PoolBoundsBody, TierBoundsBody, parse_body, read_json
from pool.inventory import PoolKey
from pool.pool_status import pool_report
from sql.pool_targets import PoolTarget, get_target, list_targets, set_target
from workers.jobs import tier_bounds


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
    # fullmatch: with re.match, "$" also matches before a trailing newline ("local\n").
    if not re.fullmatch(NAME_PATTERN, template) or not re.fullmatch(NAME_PATTERN, region):
        raise bad_request("template and region are lowercase names", "invalid_pool")
    if template not in res.settings.templates:
        raise bad_request(f"unknown template {template!r}", "unknown_template")
    if region not in res.settings.regions:
        raise bad_request(
            f"unknown region {region!r} (PREVIEW_DEFAULT_REGION and PREVIEW_REGIONS name them)",
            "unknown_region",
        )
    body = parse_body(PoolBoundsBody, await read_json(request, res.settings.preview_max_body_bytes))
    target = target_from_body(template, region, body)
    async with res.db.connection() as conn:
        before = await get_target(conn, template, region)
        stored = await set_target(conn, target, principal.user_id)
    await res.inventory.add_pool(PoolKey(template, region))
    await res.jobs.resize(template, region)
    if body.guest is not None and _guest(before) != _guest(stored):
        await res.jobs.resize_guest(template, region)
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


async def delete_pool(request: Request) -> Response:
    """Remove a pool: every bound of every tier becomes 0, so the next resize destroys its ready
    machines and its leased ones are destroyed as their sessions end. Works for a pool whose
    region or template the configuration no longer names (the way to clean one up); 404 for a
    pool nobody ever made."""
    principal = await _require_admin(request)
    res = resources(request)
    template, region = request.path_params["template"], request.path_params["region"]
    if not re.fullmatch(NAME_PATTERN, template) or not re.fullmatch(NAME_PATTERN, region):
        raise bad_request("template and region are lowercase names", "invalid_pool")
    pool = PoolKey(template, region)
    async with res.db.connection() as conn:
        known = await get_target(conn, template, region) is not None
        if not known and pool not in await res.inventory.pools():
            raise not_found("pool")
        await set_target(conn, _removed(template, region), principal.user_id)
    await res.jobs.resize(template, region)
    return JSONResponse(
        {"template": template, "region": region, "min": 0, "max": 0, "removed": True},
        status_code=202,
    )


def _removed(template: str, region: str) -> PoolTarget:
    return PoolTarget(
        template,
        region,
        0,
        0,
        suspended_min=0,
        suspended_max=0,
        stopped_min=0,
        stopped_max=0,
    )


def target_from_body(template: str, region: str, body: PoolBoundsBody) -> PoolTarget:
    """The stored form of a PUT body; 400 when a min exceeds its max."""
    for name, low, high in (
        ("min", body.min, body.max),
        ("suspended.min", *(_pair(body.suspended))),
        ("stopped.min", *(_pair(body.stopped))),
    ):
        if low > high:
            raise bad_request(f"{name} must not exceed its max", "invalid_body")
    return PoolTarget(
        template,
        region,
        body.min,
        body.max,
        suspended_min=body.suspended.min if body.suspended else None,
        suspended_max=body.suspended.max if body.suspended else None,
        stopped_min=body.stopped.min if body.stopped else None,
        stopped_max=body.stopped.max if body.stopped else None,
        guest_cpus=body.guest.cpus if body.guest else None,
        guest_memory_mb=body.guest.memory_mb if body.guest else None,
    )


def _pair(bounds: TierBoundsBody | None) -> tuple[int, int]:
    return (bounds.min, bounds.max) if bounds else (0, 0)


def _guest(target: PoolTarget | None) -> tuple[int | None, int | None]:
    return (target.guest_cpus, target.guest_memory_mb) if target else (None, None)


ROUTES = [
    Route("/api/admin/pool", get_pool, methods=["GET"]),
    Route("/api/admin/pool/{template}/{region}", put_pool, methods=["PUT"]),
    Route("/api/admin/pool/{template}/{region}", delete_pool, methods=["DELETE"]),
]
