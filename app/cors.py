"""CORS for the API: the editor is a TypeScript app on its own site, so `/api/*` answers
preflights and cross-origin requests from PREVIEW_ALLOWED_ORIGINS (and the public URL's own
origin), with Starlette's CORSMiddleware. Credentials are bearer tokens in `Authorization`,
never cookies, so no `Allow-Credentials`. Only `/api/*`: the preview origins are the user's
app, and `/ui/*` is public (app.routes.ui)."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_METHODS = ["GET", "POST", "PUT", "DELETE"]
ALLOWED_HEADERS = ["authorization", "content-type"]
# What a browser script may read off an answer besides the basics: when to retry (429, 503)
# and the id to quote in a bug report.
EXPOSED_HEADERS = ["retry-after", "x-request-id"]


class ApiCors:
    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
