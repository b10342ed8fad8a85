"""The Starlette application: routes, error mapping, request ids, and resources in lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cors import ApiCors
from app.errors import EXCEPTION_HANDLERS, error_response
from app.openapi import build_openapi
from app.preview_proxy import PreviewRouter
from app.realtime.editor import editor_socket
from app.realtime.sandbox import sandbox_socket
from app.resources import open_resources
from app.routes import (
    admin,
    alerts,
    appetize_arm,
    dev,
    flags,
    health,
    pool_history,
    rollout_report,
    sessions,
    timelines,
    ui,
)
from app.routes.health import check_stores
from app.settings import Settings
from pool.core import logs
from pool.core.gc_pauses import freeze_startup_heap
from pool.providers.local_supervisor import SANDBOX_PEER
from pool.services.alerts import AlertEvaluator, evaluating_alerts
from pool.services.metrics import Metrics
from pool.services.metrics_endpoint import Listen, serve_metrics

log = logging.getLogger("app.request")


SANDBOX_PATH = "/api/sandbox/ws"


class MachinePeerGuard:
    """A local machine's connections to the orchestrator (they come from SANDBOX_PEER, see
    pool.providers.local_supervisor) reach the sandbox socket and nothing else: in `dev` the API,
    the demo's token route and every editor socket share that port, and user code must not use
    them (it could mint a token and read another session's files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if (
            scope["type"] in ("http", "websocket")
            and client is not None
            and client[0] == SANDBOX_PEER
            and scope["path"] != SANDBOX_PATH
        ):
            log.warning("refused %s from a preview machine: only its socket", scope["path"])
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await error_response(403, "forbidden", "preview machines reach only their socket")(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class RequestContext:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would cost a task per request): gives
    every request an id, echoes it in `x-request-id`, and logs errors and slow requests."""

    def __init__(self, app: ASGIApp, slow_ms: float = 500) -> None:
        self.app = app
        self.slow_ms = slow_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        logs.request_id.set(request_id)
        logs.session_id.set(None)
        logs.machine_id.set(None)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            if status >= 500 or elapsed > self.slow_ms:
                log.warning(
                    "%s %s -> %s in %.1f ms", scope["method"], scope["path"], status, elapsed
                )
            elif logs.session_id.get() is not None and _changes_a_session(scope):
                # A session's story in the log: its lease, token refreshes, shares and end,
                # each with its request, session and machine ids (never a query string).
                log.info("%s %s -> %s in %.1f ms", scope["method"], scope["path"], status, elapsed)


def _changes_a_session(scope: Scope) -> bool:
    """Not reads, nor the heartbeat every open panel sends: one line per change."""
    return scope["method"] not in ("GET", "HEAD", "OPTIONS") and not scope["path"].endswith(
        "/heartbeat"
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


def websocket_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket options, the same for `web`, `dev` and the tests' live server."""
    return {
        "ws": "websockets-sansio",
        # A little over the gateway's own 1 MiB frame cap, which closes with 1009 itself.
        "ws_max_size": 2 * 1024 * 1024,
        "ws_per_message_deflate": settings.preview_ws_deflate,
        "ws_ping_timeout": settings.preview_ws_ping_timeout_seconds,
    }


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy-header options for `web`: `X-Forwarded-For/Proto` change the request's
    client and scheme only when they come from PREVIEW_TRUSTED_PROXIES (uvicorn's own default
    would trust 127.0.0.1, or FORWARDED_ALLOW_IPS, without the operator having said so)."""
    trusted = settings.trusted_proxies
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or []}


def create_app(
    settings: Settings, *, metrics: Metrics | None = None, metrics_listen: Listen | None = None
) -> Starlette:
    """`metrics`: the process's (`dev` shares them with its worker); `metrics_listen`: where to
    serve them on GET /metrics (`app.state.metrics_port` then says which port)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            resources = await stack.enter_async_context(open_resources(settings, metrics))
            app.state.resources = resources
            if metrics_listen is not None:
                app.state.metrics_port = await stack.enter_async_context(
                    serve_metrics(
                        resources.metrics.registry,
                        metrics_listen,
                        collect=lambda: check_stores(resources),
                    )
                )
            if settings.preview_alert_webhook_url:
                # Beside the worker's cron: a worker that stopped is noticed from here.
                await stack.enter_async_context(
                    evaluating_alerts(
                        AlertEvaluator(
                            resources.redis,
                            resources.db,
                            resources.metrics,
                            settings.preview_alert_webhook_url,
                            inventory=resources.inventory,
                        )
                    )
                )
            freeze_startup_heap()
            yield

    routes: list[BaseRoute] = [
        *sessions.ROUTES,
        *admin.ROUTES,
        *alerts.ROUTES,
        *flags.ROUTES,
        *appetize_arm.ROUTES,
        *pool_history.ROUTES,
        *rollout_report.ROUTES,
        *timelines.ROUTES,
        *health.ROUTES,
        # The document does not describe itself.
        Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        WebSocketRoute("/api/preview/sessions/{session_id}/ws", editor_socket),
        WebSocketRoute("/api/sandbox/ws", sandbox_socket),
        *ui.ROUTES,
    ]
    if settings.preview_dev_mode:
        routes.extend(dev.ROUTES)
        routes.extend(ui.DEV_ROUTES)
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.openapi = build_openapi(app.routes, settings)
    # Outermost last: request ids on everything, then preview hosts, then CORS for /api/*.
    app.add_middleware(ApiCors, origins=settings.allowed_origins)
    app.add_middleware(PreviewRouter, domain=settings.preview_domain)
    app.add_middleware(RequestContext)
    app.add_middleware(MachinePeerGuard)
    return app
