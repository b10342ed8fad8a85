"""Automatic fallback to Appetize: when the new system cannot start a session for an editor,
the answer says so (a `fallback` member: `{backend: "appetize", reason, appetize}`) and the
fallback is recorded (sql.fallbacks), so `GET /api/preview/backend` answers `appetize` with
the reason `fallback` for that project and user for PREVIEW_FALLBACK_WINDOW_SECONDS.

What falls back (docs/rollout.md, "Fallback"):
- `pool_exhausted`: no machine free and no on-demand boot slot (the 503);
- `boot_failed`, `wake_failed`: the session was answered 202 and then failed to start (the
  worker records these, pool.services.fallbacks; the editor hears `ended` with `fallback`);
- `repeated_failures`: PREVIEW_FALLBACK_FAILURES failed sessions of the project within the
  window, none started well since (the lease is refused with a 503 before it is taken).

Quota refusals (429 `quota_exceeded`, `rate_limited`) never fall back: they are the user's
plan working, and Appetize would only hide them.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.errors import ApiError, unavailable
from sql.appetize import AppetizeSettings, appetize_settings
from sql.fallbacks import record_fallback

POOL_EXHAUSTED = "pool_exhausted"
REPEATED_FAILURES = "repeated_failures"


def fallback_member(reason: str, settings: AppetizeSettings | None) -> dict[str, Any]:
    """The `fallback` member of an answer or an `ended` frame."""
    return {
        "backend": "appetize",
        "reason": reason,
        "appetize": None if settings is None else settings.as_json(),
    }


def should_fall_back(failures_in_a_row: int, threshold: int) -> bool:
    """Whether an editor's recent failures send it to Appetize before a lease is tried."""
    return failures_in_a_row >= threshold


async def fall_back(
    db: AsyncConnectionPool,
    *,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    reason: str,
    session_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the fallback and return the answer's `fallback` member, with the project's
    Appetize settings (one connection, two statements)."""
    async with db.connection() as conn:
        await record_fallback(
            conn,
            project_id=project_id,
            user_id=user_id,
            reason=reason,
            session_id=session_id,
            detail=detail,
        )
        settings = await appetize_settings(conn, project_id)
    return fallback_member(reason, settings)


def unavailable_with_fallback(code: str, message: str, fallback: dict[str, Any]) -> ApiError:
    """A 503 that tells the panel to show Appetize rather than retry."""
    error = unavailable(code, message)
    error.extra["fallback"] = fallback
    return error
