"""What every API route needs: the resources, the caller's identity, the session's view."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from app.auth import AuthError, Principal
from app.errors import unauthorized
from app.resources import Resources
from app.schemas import SessionView
from app.session_tokens import mint_session_token
from sql.sessions import SessionRow


def resources(conn: HTTPConnection) -> Resources:
    res: Resources = conn.app.state.resources
    return res


async def authenticate(conn: HTTPConnection) -> Principal:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized()
    try:
        return await resources(conn).verifier.verify(token.strip())
    except AuthError:
        raise unauthorized("the access token is invalid or expired") from None


def preview_origin(res: Resources, session_id: object) -> str:
    """The session's own origin: https://{id}.{PREVIEW_DOMAIN} in production, otherwise
    http://{id}.preview.localhost:{port} (Chromium resolves *.localhost to loopback)."""
    scheme = res.settings.preview_scheme
    if res.settings.preview_domain:
        return f"{scheme}://{session_id}.{res.settings.preview_domain}"
    public = urlsplit(res.settings.preview_public_url)
    port = f":{public.port}" if public.port else ""
    return f"{scheme}://{session_id}.preview.localhost{port}"


def token_expiry(res: Resources, row: SessionRow, ttl_seconds: int) -> int:
    """When a token minted now for this session expires: `ttl_seconds` from now, never past
    the session's maximum duration."""
    return int(min(row.expires_at.timestamp(), time.time() + ttl_seconds))


def session_view(res: Resources, row: SessionRow) -> SessionView:
    public = urlsplit(res.settings.preview_public_url)
    ws_scheme = "wss" if public.scheme == "https" else "ws"
    expires = token_expiry(res, row, res.settings.preview_session_token_ttl_seconds)
    token = mint_session_token(res.token_secret, row.id, expires)
    origin = preview_origin(res, row.id)
    return SessionView(
        id=row.id,
        status=row.status,
        project_id=row.project_id,
        template=row.template,
        region=row.region,
        device_type=row.device_type,
        device=row.device,
        machine_id=row.machine_id,
        # The first load carries the token; the preview origin swaps it for a cookie.
        preview_url=f"{origin}/?token={token}",
        preview_origin=origin,
        ws_url=f"{ws_scheme}://{public.netloc}/api/preview/sessions/{row.id}/ws",
        token=token,
        token_expires_at=datetime.fromtimestamp(expires, UTC),
        expires_at=row.expires_at,
        created_at=row.created_at,
        last_activity=row.last_activity,
    )
