"""Liveness and readiness. /readyz checks Postgres, Redis and that a worker is alive (arq
refreshes its health-check key every few seconds; it expires when no worker runs, and while the
worker cannot reach Redis). Each check is named in the answer, `ok` or `failing: <error>`; the
checks run side by side, each bounded, so the answer comes within CHECK_TIMEOUT_SECONDS even
when every store hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.openapi import Answer, ApiRoute, Operation
from app.resources import Resources
from app.routes.common import resources
from app.schemas import LivenessView, ReadinessView

WORKER_HEALTH_KEY = "arq:queue:health-check"
CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks = await _run_checks(resources(request), with_worker=True)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def check_stores(res: Resources) -> None:
    """Postgres and Redis checked as /readyz checks them, for `preview_store_up` (run before
    each scrape of /metrics)."""
    await _run_checks(res, with_worker=False)


async def _run_checks(res: Resources, *, with_worker: bool) -> dict[str, str]:
    """Each check `ok` or `failing: ...`; the stores' verdicts also go to the metrics."""
    checks: dict[str, str] = {}

    async def postgres() -> None:
        # Shorter than the check's bound, so the pool's own error is what the answer shows.
        async with res.db.connection(timeout=CHECK_TIMEOUT_SECONDS * 0.75) as conn:
            await conn.execute("SELECT 1")

    async def redis() -> None:
        await res.redis.ping()

    async def worker() -> None:
        if not await res.redis.exists(WORKER_HEALTH_KEY):
            raise RuntimeError("no worker heartbeat")

    async def run(name: str, check: Callable[[], Awaitable[None]]) -> None:
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = f"failing: no answer in {CHECK_TIMEOUT_SECONDS:g} s"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}: {exc}"[:200]

    named = {"postgres": postgres, "redis": redis, "worker": worker}
    names = ("postgres", "redis", "worker") if with_worker else ("postgres", "redis")
    await asyncio.gather(*(run(name, named[name]) for name in names))
    for store in ("postgres", "redis"):
        res.metrics.store_up(store, checks[store] == "ok")
    return {name: checks[name] for name in names}


ROUTES = [
    ApiRoute(
        "/healthz",
        GET=Operation(healthz, "Liveness", {200: Answer("alive", LivenessView)}, public=True),
    ),
    ApiRoute(
        "/readyz",
        GET=Operation(
            readyz,
            "Postgres, Redis and a worker",
            {
                200: Answer("ready", ReadinessView),
                503: Answer("not ready: the failing checks are named", ReadinessView),
            },
            public=True,
        ),
    ),
]
