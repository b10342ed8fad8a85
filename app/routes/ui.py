"""The browser side, served by `web` with no build step (docs/embedding.md):

- `/ui/client/{file}`: the TypeScript client, `<preview-panel>` and the React wrapper, compiled
  to ES modules (`app/ui/client/dist`, committed; the npm package `@preview-orchestrator/client`
  is the same files);
- `/ui/vendor/{package}/{file}`: the npm packages they load at run time (the QR code renderer;
  CodeMirror for the demo; axe-core for the accessibility tests), from `app/ui/node_modules`,
  installed from `app/ui/package-lock.json`. Only the lockfile's runtime packages are served,
  never its dev tools;
- `/ui/demo/{file}` and, in `dev` only, `/`: the demo editor;
- `/admin` and `/ui/admin/{file}`: the operator dashboard (its TypeScript compiled to
  `app/ui/admin/dist`, committed). The page holds no data: every figure comes from the admin
  API with the operator's token.

Everything here is public and the same for everyone: `Access-Control-Allow-Origin: *`, so an
editor on another site can import the panel straight from the service.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from app.errors import not_found
from app.ui_assets import UI_DIR, runtime_packages

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".ts": "text/plain; charset=utf-8",
}


def _inside(root: Path, relative: str) -> Path | None:
    """`relative` under `root`, or None when it is not a plain file there (no `..`, no
    symlink out of it, no hidden files)."""
    if not relative or any(part.startswith(".") for part in relative.split("/")):
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_file() or not candidate.is_relative_to(root.resolve()):
        return None
    return candidate


def _serve(path: Path | None, *, cache: str) -> Response:
    if path is None or path.suffix not in _TYPES:
        raise not_found("file")
    return FileResponse(
        path,
        media_type=_TYPES[path.suffix],
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": cache},
    )


async def client_file(request: Request) -> Response:
    return _serve(_inside(UI_DIR / "client" / "dist", request.path_params["path"]), cache=_SHORT)


async def demo_file(request: Request) -> Response:
    return _serve(_inside(UI_DIR / "demo", request.path_params["path"]), cache=_SHORT)


async def vendor_file(request: Request) -> Response:
    package, rest = _split_package(request.path_params["path"])
    if package not in runtime_packages(UI_DIR):
        raise not_found("package")
    # Package files change only with the lockfile, which changes the deployment.
    return _serve(_inside(UI_DIR / "node_modules" / package, rest), cache="public, max-age=3600")


async def admin_file(request: Request) -> Response:
    path = _inside(UI_DIR / "admin", request.path_params["path"])
    # The compiled script and the style sheet; not the TypeScript sources or their config.
    return _serve(path if path and path.suffix in (".js", ".css") else None, cache=_SHORT)


async def admin_page(request: Request) -> Response:
    page = _serve(UI_DIR / "admin" / "index.html", cache="no-cache")
    # An operator's page: never inside another site's frame, and nothing but its own files.
    page.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    page.headers["X-Frame-Options"] = "DENY"
    return page


async def demo_page(request: Request) -> Response:
    return _serve(UI_DIR / "demo" / "index.html", cache="no-cache")


def _split_package(path: str) -> tuple[str, str]:
    """`@scope/name/file` or `name/file` → (package, file)."""
    parts = path.split("/")
    count = 2 if parts[0].startswith("@") else 1
    return "/".join(parts[:count]), "/".join(parts[count:])


_SHORT = "public, max-age=60"

# Static files, not the API: outside the OpenAPI document (app/openapi.py).
ROUTES: list[BaseRoute] = [
    Route("/ui/client/{path:path}", client_file, methods=["GET"], include_in_schema=False),
    Route("/ui/vendor/{path:path}", vendor_file, methods=["GET"], include_in_schema=False),
    Route("/ui/demo/{path:path}", demo_file, methods=["GET"], include_in_schema=False),
    Route("/ui/admin/{path:path}", admin_file, methods=["GET"], include_in_schema=False),
    Route("/admin", admin_page, methods=["GET"], include_in_schema=False),
]
DEV_ROUTES: list[BaseRoute] = [Route("/", demo_page, methods=["GET"], include_in_schema=False)]
