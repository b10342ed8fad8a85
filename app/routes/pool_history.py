"""GET /api/admin/pool/history: every pool's sampled counts over the last hour (the worker
records them, pool.services.pool_history), for the dashboard's charts. Admins only."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from itertools import groupby

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import forbidden
from app.openapi import Answer, ApiRoute, Operation
from app.pool_history_schemas import (
    PoolHistoryQuery,
    PoolHistoryView,
    PoolSampleView,
    ReadyTiersView,
)
from app.routes.common import authenticate, resources
from app.schemas import parse_query
from pool.core.pool_history import HIT_RATIO_WINDOW_SECONDS, PoolSample, windowed_hit_ratios
from pool.store.pool_history import PoolHistory


async def pool_history(request: Request) -> Response:
    if not (await authenticate(request)).is_admin:
        raise forbidden("operators only")
    minutes = parse_query(PoolHistoryQuery, request).minutes
    res = resources(request)
    start = time.time() - minutes * 60
    # The samples before `start` too: the first ones' hit ratios look back over their window.
    samples = await PoolHistory(res.redis).since(start - HIT_RATIO_WINDOW_SECONDS)
    view = PoolHistoryView(samples=_views(samples, start))
    return JSONResponse(view.model_dump(mode="json", by_alias=True))


def _views(samples: list[PoolSample], start: float) -> list[PoolSampleView]:
    views: list[PoolSampleView] = []
    by_pool = sorted(samples, key=lambda s: (s.template, s.region, s.at))
    for _, group in groupby(by_pool, key=lambda s: (s.template, s.region)):
        pool_samples = list(group)
        for sample, ratio in zip(pool_samples, windowed_hit_ratios(pool_samples), strict=True):
            if sample.at < start:
                continue
            views.append(
                PoolSampleView(
                    at=datetime.fromtimestamp(sample.at, UTC),
                    template=sample.template,
                    region=sample.region,
                    ready=ReadyTiersView(
                        hot=sample.hot, suspended=sample.suspended, stopped=sample.stopped
                    ),
                    leased=sample.leased,
                    booting=sample.booting,
                    hit_ratio=ratio,
                )
            )
    views.sort(key=lambda v: v.at)
    return views


ROUTES = [
    ApiRoute(
        "/api/admin/pool/history",
        GET=Operation(
            pool_history,
            "Every pool's ready, leased and booting machines and hit ratio, sampled every "
            "10 s over the last hour (admins)",
            {200: Answer("samples, oldest first", PoolHistoryView)},
            errors=(403,),
            query=PoolHistoryQuery,
        ),
    )
]
