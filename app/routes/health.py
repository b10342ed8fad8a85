"""Liveness and readiness. /readyz checks Postgres, Redis and that a worker is alive (arq
refreshes its health-check key every few seconds; it expires when no worker runs)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.routes.common import resources

WORKER_HEALTH_KEY = "arq:queue:health-check"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    res = resources(request)
    checks: dict[str, str] = {}

    async def postgres() -> None:
        async with res.db.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")

    async def redis() -> None:
        await res.redis.ping()

    async def worker() -> None:
        if not await res.redis.exists(WORKER_HEALTH_KEY):
            raise RuntimeError("no worker heartbeat")

    for name, check in (("postgres", postgres), ("redis", redis), ("worker", worker)):
        try:
            await asyncio.wait_for(check(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}: {exc}"[:200]
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
